/*  sn_json: JSON at the edges, translated to and from msgpack.

    The gateway and the CLI speak JSON; everything inside the node speaks msgpack. The
    translation is mechanical (same keys, same shapes) and bounded: parsing rejects
    duplicate keys and nesting deeper than SN_MSG_MAX_DEPTH before anything is packed.
*/
#ifndef SN_JSON_H_INCLUDED
#define SN_JSON_H_INCLUDED

#include <jansson.h>
#include "sn_msg.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Parse len bytes of JSON text and append it to pack as one msgpack value.
//  Returns 0, or -1 with a clear reason in error ("invalid JSON at line 1, column 7:
//  ...", "nesting deeper than 24 levels"). Nothing is appended on failure.
int sn_json_to_pack (const char *text, size_t len, sn_pack_t *pack, char *error, size_t size);

//  Parse len bytes of JSON text. Returns a new reference, or NULL with the reason in
//  error. Bounds nesting like sn_json_to_pack.
json_t *sn_json_parse (const char *text, size_t len, char *error, size_t size);

//  Append a parsed JSON value to pack. Returns 0, or -1 with the reason in error
//  (nesting too deep, a number msgpack cannot hold).
int sn_json_pack (json_t *json, sn_pack_t *pack, char *error, size_t size);

//  A new JSON value for a decoded msgpack value, or NULL if it has no JSON form.
json_t *sn_json_from_value (const sn_value_t *value);

//  Compact JSON text for a decoded msgpack value, or NULL. Caller frees with free ().
char *sn_json_text (const sn_value_t *value);

void sn_json_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
