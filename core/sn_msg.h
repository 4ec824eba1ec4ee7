/*  sn_msg: msgpack messages, decoded safely and built without allocation games.

    Every message in supernode is one msgpack map in one ZeroMQ frame. This class is
    the only place that calls msgpack-c: actors see typed accessors (sn_value_*) and a
    builder (sn_pack_*), never raw msgpack objects.

    Decoding treats its input as hostile. Before msgpack-c allocates anything, a
    pre-scan checks the frame size, the nesting depth, that every declared length fits
    in the bytes that remain, that strings are UTF-8 and map keys are strings, that
    floats are finite, and that no bytes trail the value. The accepted data model is
    JSON's: nil, bool, integers, floats, strings, arrays and maps with string keys
    (no bin, no ext), so every valid frame converts to JSON and back.
*/
#ifndef SN_MSG_H_INCLUDED
#define SN_MSG_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Deepest nesting accepted anywhere (containers inside containers).
#define SN_MSG_MAX_DEPTH 24

//  Largest frame decoded by default (bulk requests are the largest messages).
#define SN_MSG_MAX_SIZE (8 * 1024 * 1024)

typedef struct _sn_msg_t sn_msg_t;
typedef struct msgpack_object sn_value_t; // opaque: use sn_value_* only

typedef enum {
    SN_TYPE_NIL,
    SN_TYPE_BOOL,
    SN_TYPE_INT, //  any integer; sn_value_uint / sn_value_int read it
    SN_TYPE_FLOAT,
    SN_TYPE_STRING,
    SN_TYPE_ARRAY,
    SN_TYPE_MAP
} sn_type_t;

//  Decode one frame. Returns NULL when the frame is not acceptable, with *error_p set
//  to a static description ("frame too large", "nesting too deep", ...). max_size of
//  0 means SN_MSG_MAX_SIZE. The data is copied: the caller may free it afterwards.
sn_msg_t *sn_msg_decode (const void *data, size_t size, size_t max_size, const char **error_p);

//  Decode a frame that sn_msg_decode already accepted in this process, passed from
//  one actor to another: the pre-scan and the duplicate-key check are not repeated.
//  Never use it on bytes from outside the process. Returns NULL with *error_p set
//  when msgpack-c cannot read the frame.
sn_msg_t *sn_msg_decode_trusted (const void *data, size_t size, const char **error_p);

//  Destroy a decoded message; every sn_value_t taken from it becomes invalid.
void sn_msg_destroy (sn_msg_t **self_p);

//  The top-level value.
const sn_value_t *sn_msg_root (sn_msg_t *self);

//  The encoded bytes the message was decoded from.
const byte *sn_msg_data (sn_msg_t *self);
size_t sn_msg_size (sn_msg_t *self);

//  Value accessors. Every one accepts NULL and then answers "absent".
sn_type_t sn_value_type (const sn_value_t *value);
bool sn_value_is (const sn_value_t *value, sn_type_t type);

//  Member of a map by key, or NULL when value is not a map or has no such key.
const sn_value_t *sn_value_get (const sn_value_t *value, const char *key);

//  Number of elements of an array or map, bytes of a string, else 0.
size_t sn_value_size (const sn_value_t *value);

//  Array element i, or NULL.
const sn_value_t *sn_value_at (const sn_value_t *value, size_t index);

//  Map entry i: its key (not NUL-terminated, length in *len_p) and its value.
const char *sn_value_key_at (const sn_value_t *value, size_t index, size_t *len_p);
const sn_value_t *sn_value_value_at (const sn_value_t *value, size_t index);

//  Integer readers: true when value is an integer that fits.
bool sn_value_uint (const sn_value_t *value, uint64_t *result);
bool sn_value_int (const sn_value_t *value, int64_t *result);

//  Any number (integer or float) as a double.
bool sn_value_number (const sn_value_t *value, double *result);

bool sn_value_bool (const sn_value_t *value, bool *result);

//  String bytes (not NUL-terminated) and length, or NULL when not a string.
const char *sn_value_str (const sn_value_t *value, size_t *len_p);

//  The bytes of a bin value, or NULL for anything else.
const byte *sn_value_bin (const sn_value_t *value, size_t *size_p);

//  A NUL-terminated copy of a string value, or NULL. Caller frees.
char *sn_value_strdup (const sn_value_t *value);

//  True when value is a string equal to text.
bool sn_value_streq (const sn_value_t *value, const char *text);

//  Member of a map that is a string: a NUL-terminated copy, or NULL. Caller frees.
char *sn_value_get_strdup (const sn_value_t *value, const char *key);

//  Deep equality of two values.
bool sn_value_equal (const sn_value_t *a, const sn_value_t *b);

//  -------------------------------------------------------------------------
//  sn_pack: build one msgpack value into a growing buffer.

typedef struct _sn_pack_t sn_pack_t;

sn_pack_t *sn_pack_new (void);
void sn_pack_destroy (sn_pack_t **self_p);

//  Empty the buffer, keeping its memory, to build the next message.
void sn_pack_reset (sn_pack_t *self);

void sn_pack_map (sn_pack_t *self, uint32_t entries);
void sn_pack_array (sn_pack_t *self, uint32_t elements);
void sn_pack_str (sn_pack_t *self, const char *text);
void sn_pack_strn (sn_pack_t *self, const char *text, size_t len);
void sn_pack_bin (sn_pack_t *self, const void *data, size_t size);
void sn_pack_uint (sn_pack_t *self, uint64_t number);
void sn_pack_int (sn_pack_t *self, int64_t number);
void sn_pack_double (sn_pack_t *self, double number);
void sn_pack_bool (sn_pack_t *self, bool flag);
void sn_pack_nil (sn_pack_t *self);

//  Copy a decoded value, with everything inside it.
void sn_pack_value (sn_pack_t *self, const sn_value_t *value);

//  Append bytes that already hold one complete msgpack value.
void sn_pack_raw (sn_pack_t *self, const void *data, size_t size);

//  Map-entry shorthands: key then value.
void sn_pack_kv_str (sn_pack_t *self, const char *key, const char *text);
void sn_pack_kv_uint (sn_pack_t *self, const char *key, uint64_t number);
void sn_pack_kv_value (sn_pack_t *self, const char *key, const sn_value_t *value);

const byte *sn_pack_data (sn_pack_t *self);
size_t sn_pack_size (sn_pack_t *self);

//  A new frame holding a copy of the buffer.
zframe_t *sn_pack_frame (sn_pack_t *self);

//  True when reply (a map) has a code a reply may carry, 2xx, 4xx or 5xx, into *code:
//  what an actor or another member answers reaches a client only with one.
bool sn_reply_code (const sn_value_t *reply, uint64_t *code);

//  Build the standard error reply {rid, code, error} into self (after a reset).
void sn_pack_error (sn_pack_t *self, uint64_t rid, int code, const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

void sn_msg_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
