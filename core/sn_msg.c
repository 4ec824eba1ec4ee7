/*  sn_msg: msgpack messages, decoded safely and built into growing buffers.

    The pre-scan (s_scan) is what makes decoding safe: msgpack-c trusts the lengths a
    frame declares and allocates for them, so we walk the bytes first, without
    allocating, and only hand msgpack-c a frame we know is well formed and bounded.
*/
#include "sn_msg.h"
#include <math.h>
#include <msgpack.h>

struct _sn_msg_t {
    byte *data;          //  our copy of the frame, in the zone; strings point into it
    size_t size;         //  bytes in data
    msgpack_zone zone;   //  holds data and the decoded tree, sized by the scan
    msgpack_object root; //  the top-level value
};

struct _sn_pack_t {
    byte *data;            //  the buffer being built
    size_t size;           //  bytes used
    size_t capacity;       //  bytes allocated
    msgpack_packer packer; //  writes into this object through s_pack_write
};

//  --------------------------------------------------------------------------
//  The pre-scan

//  One open container while scanning.
typedef struct {
    uint64_t remaining; //  items (keys and values) still to read
    bool is_map;        //  keys of maps must be strings
} s_level_t;

//  Big-endian readers; the caller has checked the bytes are there.
static uint64_t
s_be (const byte *p, size_t width)
{
    uint64_t value = 0;
    for (size_t i = 0; i < width; i++)
        value = (value << 8) | p[i];
    return value;
}

//  True when the bytes are well-formed UTF-8: no overlong forms, no surrogates,
//  nothing above U+10FFFF. Strings must convert to JSON, which requires this.
static bool
s_utf8_valid (const byte *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        byte c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t extra;
        uint32_t min, code;
        if ((c & 0xe0) == 0xc0) {
            extra = 1, min = 0x80, code = c & 0x1f;
        }
        else if ((c & 0xf0) == 0xe0) {
            extra = 2, min = 0x800, code = c & 0x0f;
        }
        else if ((c & 0xf8) == 0xf0) {
            extra = 3, min = 0x10000, code = c & 0x07;
        }
        else
            return false;
        if (len - i <= extra)
            return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            code = (code << 6) | (p[i + k] & 0x3f);
        }
        if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
            return false;
        i += extra + 1;
    }
    return true;
}

//  Walk one msgpack value in data without allocating. Returns NULL when it is
//  acceptable (see sn_msg.h), else a static reason. Counts the values it holds in
//  *values, so that the decoder can size its memory in one allocation.
static const char *
s_scan (const byte *data, size_t size, size_t *values)
{
    s_level_t stack[SN_MSG_MAX_DEPTH];
    size_t depth = 0;
    //  Items announced but not yet read, across all open containers. Each needs at
    //  least one byte, which bounds what msgpack-c will allocate for them.
    uint64_t pending = 1;
    size_t pos = 0;
    *values = 0;

    while (pending > 0) {
        if (pos >= size)
            return "truncated message";
        if (depth > 0) {
            s_level_t *level = &stack[depth - 1];
            bool is_key = level->is_map && level->remaining % 2 == 0;
            byte b = data[pos];
            bool is_str = (b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb);
            if (is_key && !is_str)
                return "map keys must be strings";
            level->remaining--;
        }
        pending--;
        (*values)++;
        byte b = data[pos++];
        size_t avail = size - pos;
        uint64_t length = 0; //  string bytes to skip
        uint64_t items = 0;  //  container items to read
        bool container = false, is_map = false;

        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
            ; //  fixint, nil, bool: nothing follows
        else if (b <= 0x8f)
            container = is_map = true, items = 2 * (uint64_t) (b & 0x0f);
        else if (b <= 0x9f)
            container = true, items = b & 0x0f;
        else if (b <= 0xbf)
            length = b & 0x1f;
        else if (b == 0xca || b == 0xcb) {
            size_t width = b == 0xca ? 4 : 8;
            if (avail < width)
                return "truncated message";
            uint64_t bits = s_be (data + pos, width);
            double number;
            if (width == 4) {
                uint32_t bits32 = (uint32_t) bits;
                float f;
                memcpy (&f, &bits32, 4);
                number = f;
            }
            else
                memcpy (&number, &bits, 8);
            if (!isfinite (number))
                return "numbers must be finite";
            pos += width;
        }
        else if (b >= 0xcc && b <= 0xd3) {
            size_t width = (size_t) 1 << ((b - 0xcc) & 3);
            if (avail < width)
                return "truncated message";
            pos += width;
        }
        else if (b >= 0xd9 && b <= 0xdb) {
            size_t width = (size_t) 1 << (b - 0xd9);
            if (avail < width)
                return "truncated message";
            length = s_be (data + pos, width);
            pos += width;
        }
        else if (b == 0xdc || b == 0xdd || b == 0xde || b == 0xdf) {
            size_t width = (b == 0xdc || b == 0xde) ? 2 : 4;
            if (avail < width)
                return "truncated message";
            items = s_be (data + pos, width);
            pos += width;
            container = true;
            is_map = b >= 0xde;
            if (is_map)
                items *= 2;
        }
        else if (b == 0xc1)
            return "invalid msgpack byte 0xc1";
        else
            return "binary and extension types are not accepted";

        if (length > 0) {
            if (length > size - pos)
                return "string longer than the message";
            if (!s_utf8_valid (data + pos, length))
                return "strings must be UTF-8";
            pos += length;
        }
        if (container && items > 0) {
            if (depth == SN_MSG_MAX_DEPTH)
                return "nesting too deep";
            pending += items;
            if (pending > size - pos)
                return "container longer than the message";
            stack[depth].remaining = items;
            stack[depth].is_map = is_map;
            depth++;
        }
        else if (container && depth == SN_MSG_MAX_DEPTH)
            return "nesting too deep";
        while (depth > 0 && stack[depth - 1].remaining == 0)
            depth--;
    }
    if (pos != size)
        return "trailing bytes after the message";
    return NULL;
}

//  Count the objects msgpack-c makes for a frame it is trusted to read, one per array
//  element and two per map entry, so that the decoder can size its memory exactly.
//  Nothing is checked but that the counted values fit in the frame: returns false
//  when they do not, and msgpack-c would refuse the frame anyway.
static bool
s_count_objects (const byte *data, size_t size, size_t *objects)
{
    uint64_t pending = 1; //  values announced and not yet read
    size_t pos = 0;
    *objects = 0;
    while (pending > 0) {
        if (pos >= size)
            return false;
        pending--;
        byte b = data[pos++];
        size_t width = 0;   //  bytes of the length or count that follows
        uint64_t skip = 0;  //  bytes of payload after it
        uint64_t items = 0; //  values the container holds
        if (b <= 0x7f || b >= 0xe0 || (b >= 0xc0 && b <= 0xc3))
            ; //  fixint, nil, bool (0xc1 is never used: msgpack-c refuses it)
        else if (b <= 0x8f)
            items = 2 * (uint64_t) (b & 0x0f);
        else if (b <= 0x9f)
            items = b & 0x0f;
        else if (b <= 0xbf)
            skip = b & 0x1f;
        else if (b <= 0xc6)
            width = (size_t) 1 << (b - 0xc4); //  bin
        else if (b <= 0xc9)
            width = (size_t) 1 << (b - 0xc7), skip = 1; //  ext: its type follows the length
        else if (b <= 0xcb)
            skip = b == 0xca ? 4 : 8;
        else if (b <= 0xd3)
            skip = (uint64_t) 1 << ((b - 0xcc) & 3);
        else if (b <= 0xd8)
            skip = 1 + ((uint64_t) 1 << (b - 0xd4)); //  fixext
        else if (b <= 0xdb)
            width = (size_t) 1 << (b - 0xd9); //  str
        else
            width = b == 0xdc || b == 0xde ? 2 : 4; //  array, map
        if (width) {
            if (size - pos < width)
                return false;
            uint64_t length = s_be (data + pos, width);
            pos += width;
            if (b >= 0xdc)
                items = b >= 0xde ? 2 * length : length;
            else
                skip += length;
        }
        if (skip > size - pos)
            return false;
        pos += skip;
        //  Every value takes a byte at least: counts past the frame are not believed
        if (pending + items > size - pos)
            return false;
        pending += items;
        *objects += items;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  Decoding

static int
s_compare_keys (const void *a, const void *b)
{
    const msgpack_object_str *x = &(*(const msgpack_object_kv *const *) a)->key.via.str;
    const msgpack_object_str *y = &(*(const msgpack_object_kv *const *) b)->key.via.str;
    uint32_t len = x->size < y->size ? x->size : y->size;
    int order = len ? memcmp (x->ptr, y->ptr, len) : 0;
    return order ? order : (x->size > y->size) - (x->size < y->size);
}

//  True when no map inside value has the same key twice. JSON has no form for such
//  a map, and readers would disagree on which value counts, so it never enters.
//  Large maps are checked by sorting, so a hostile map costs n log n, not n squared.
static bool
s_keys_unique (const msgpack_object *value)
{
    if (value->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < value->via.array.size; i++)
            if (!s_keys_unique (&value->via.array.ptr[i]))
                return false;
        return true;
    }
    if (value->type != MSGPACK_OBJECT_MAP)
        return true;
    uint32_t size = value->via.map.size;
    msgpack_object_kv *entries = value->via.map.ptr;
    bool unique = true;
    if (size <= 8) {
        for (uint32_t i = 0; i < size && unique; i++)
            for (uint32_t j = i + 1; j < size && unique; j++)
                unique = s_compare_keys (&(const msgpack_object_kv *){&entries[i]},
                                         &(const msgpack_object_kv *){&entries[j]}) != 0;
    }
    else {
        const msgpack_object_kv **sorted =
            (const msgpack_object_kv **) zmalloc (size * sizeof (msgpack_object_kv *));
        for (uint32_t i = 0; i < size; i++)
            sorted[i] = &entries[i];
        qsort (sorted, size, sizeof *sorted, s_compare_keys);
        for (uint32_t i = 1; i < size && unique; i++)
            unique = s_compare_keys (&sorted[i - 1], &sorted[i]) != 0;
        free (sorted);
    }
    for (uint32_t i = 0; i < size && unique; i++)
        unique = s_keys_unique (&entries[i].val);
    return unique;
}

//  Copy the frame and let msgpack-c decode it. One chunk holds the copy and every
//  object msgpack-c makes for it (at most one per value, in arrays and key-value
//  pairs), instead of msgpack-c's default 8 KiB chunk and a separate copy.
static sn_msg_t *
s_unpack (const void *data, size_t size, size_t values, const char **error_p)
{
    sn_msg_t *self = (sn_msg_t *) zmalloc (sizeof (sn_msg_t));
    bool ready = msgpack_zone_init (&self->zone, size + values * sizeof (msgpack_object) + 64);
    assert (ready);
    self->data = (byte *) msgpack_zone_malloc_no_align (&self->zone, size);
    assert (self->data);
    memcpy (self->data, data, size);
    self->size = size;
    size_t offset = 0;
    msgpack_unpack_return rc =
        msgpack_unpack ((const char *) self->data, size, &offset, &self->zone, &self->root);
    if (rc != MSGPACK_UNPACK_SUCCESS || offset != size) {
        *error_p = "malformed message";
        sn_msg_destroy (&self);
    }
    return self;
}

sn_msg_t *
sn_msg_decode (const void *data, size_t size, size_t max_size, const char **error_p)
{
    const char *ignored;
    if (!error_p)
        error_p = &ignored;
    if (max_size == 0)
        max_size = SN_MSG_MAX_SIZE;
    if (!data || size == 0) {
        *error_p = "empty message";
        return NULL;
    }
    if (size > max_size) {
        *error_p = "message too large";
        return NULL;
    }
    size_t values;
    const char *reason = s_scan ((const byte *) data, size, &values);
    if (reason) {
        *error_p = reason;
        return NULL;
    }
    sn_msg_t *self = s_unpack (data, size, values, error_p);
    if (!self)
        return NULL;
    if (!s_keys_unique (&self->root)) {
        *error_p = "duplicate map key";
        sn_msg_destroy (&self);
        return NULL;
    }
    return self;
}

sn_msg_t *
sn_msg_decode_trusted (const void *data, size_t size, const char **error_p)
{
    const char *ignored;
    if (!error_p)
        error_p = &ignored;
    if (!data || size == 0) {
        *error_p = "empty message";
        return NULL;
    }
    //  Sized exactly, the chunk of a small frame is small enough for malloc's
    //  per-thread cache, where the last message's chunk waits
    size_t objects;
    if (!s_count_objects ((const byte *) data, size, &objects)) {
        *error_p = "malformed message";
        return NULL;
    }
    return s_unpack (data, size, objects, error_p);
}

void
sn_msg_destroy (sn_msg_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        sn_msg_t *self = *self_p;
        msgpack_zone_destroy (&self->zone);
        free (self);
        *self_p = NULL;
    }
}

const sn_value_t *
sn_msg_root (sn_msg_t *self)
{
    assert (self);
    return &self->root;
}

const byte *
sn_msg_data (sn_msg_t *self)
{
    assert (self);
    return self->data;
}

size_t
sn_msg_size (sn_msg_t *self)
{
    assert (self);
    return self->size;
}

//  --------------------------------------------------------------------------
//  Value accessors

sn_type_t
sn_value_type (const sn_value_t *value)
{
    if (!value)
        return SN_TYPE_NIL;
    switch (value->type) {
        case MSGPACK_OBJECT_BOOLEAN:
            return SN_TYPE_BOOL;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            return SN_TYPE_INT;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            return SN_TYPE_FLOAT;
        case MSGPACK_OBJECT_STR:
            return SN_TYPE_STRING;
        case MSGPACK_OBJECT_ARRAY:
            return SN_TYPE_ARRAY;
        case MSGPACK_OBJECT_MAP:
            return SN_TYPE_MAP;
        default:
            return SN_TYPE_NIL;
    }
}

bool
sn_value_is (const sn_value_t *value, sn_type_t type)
{
    return value && sn_value_type (value) == type;
}

const sn_value_t *
sn_value_get (const sn_value_t *value, const char *key)
{
    if (!value || value->type != MSGPACK_OBJECT_MAP || !key)
        return NULL;
    size_t key_len = strlen (key);
    const msgpack_object_map *map = &value->via.map;
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == key_len &&
            memcmp (k->via.str.ptr, key, key_len) == 0)
            return &map->ptr[i].val;
    }
    return NULL;
}

size_t
sn_value_size (const sn_value_t *value)
{
    if (!value)
        return 0;
    if (value->type == MSGPACK_OBJECT_ARRAY)
        return value->via.array.size;
    if (value->type == MSGPACK_OBJECT_MAP)
        return value->via.map.size;
    if (value->type == MSGPACK_OBJECT_STR)
        return value->via.str.size;
    return 0;
}

const sn_value_t *
sn_value_at (const sn_value_t *value, size_t index)
{
    if (!value || value->type != MSGPACK_OBJECT_ARRAY || index >= value->via.array.size)
        return NULL;
    return &value->via.array.ptr[index];
}

const char *
sn_value_key_at (const sn_value_t *value, size_t index, size_t *len_p)
{
    if (!value || value->type != MSGPACK_OBJECT_MAP || index >= value->via.map.size)
        return NULL;
    return sn_value_str (&value->via.map.ptr[index].key, len_p);
}

const sn_value_t *
sn_value_value_at (const sn_value_t *value, size_t index)
{
    if (!value || value->type != MSGPACK_OBJECT_MAP || index >= value->via.map.size)
        return NULL;
    return &value->via.map.ptr[index].val;
}

bool
sn_value_uint (const sn_value_t *value, uint64_t *result)
{
    if (!value || value->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    if (result)
        *result = value->via.u64;
    return true;
}

bool
sn_value_int (const sn_value_t *value, int64_t *result)
{
    if (!value)
        return false;
    if (value->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        if (result)
            *result = value->via.i64;
        return true;
    }
    if (value->type == MSGPACK_OBJECT_POSITIVE_INTEGER && value->via.u64 <= INT64_MAX) {
        if (result)
            *result = (int64_t) value->via.u64;
        return true;
    }
    return false;
}

bool
sn_value_number (const sn_value_t *value, double *result)
{
    if (!value)
        return false;
    double number;
    if (value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        number = (double) value->via.u64;
    else if (value->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        number = (double) value->via.i64;
    else if (value->type == MSGPACK_OBJECT_FLOAT32 || value->type == MSGPACK_OBJECT_FLOAT64)
        number = value->via.f64;
    else
        return false;
    if (result)
        *result = number;
    return true;
}

bool
sn_value_bool (const sn_value_t *value, bool *result)
{
    if (!value || value->type != MSGPACK_OBJECT_BOOLEAN)
        return false;
    if (result)
        *result = value->via.boolean;
    return true;
}

const char *
sn_value_str (const sn_value_t *value, size_t *len_p)
{
    if (!value || value->type != MSGPACK_OBJECT_STR)
        return NULL;
    if (len_p)
        *len_p = value->via.str.size;
    //  msgpack-c gives a NULL pointer for empty strings; callers want a string.
    return value->via.str.size ? value->via.str.ptr : "";
}

const byte *
sn_value_bin (const sn_value_t *value, size_t *size_p)
{
    if (!value || value->type != MSGPACK_OBJECT_BIN)
        return NULL;
    if (size_p)
        *size_p = value->via.bin.size;
    static const byte empty[1] = {0};
    return value->via.bin.size ? (const byte *) value->via.bin.ptr : empty;
}

char *
sn_value_strdup (const sn_value_t *value)
{
    size_t len;
    const char *text = sn_value_str (value, &len);
    if (!text)
        return NULL;
    char *copy = (char *) zmalloc (len + 1);
    memcpy (copy, text, len);
    return copy;
}

bool
sn_value_streq (const sn_value_t *value, const char *text)
{
    size_t len;
    const char *str = sn_value_str (value, &len);
    return str && text && strlen (text) == len && memcmp (str, text, len) == 0;
}

char *
sn_value_get_strdup (const sn_value_t *value, const char *key)
{
    return sn_value_strdup (sn_value_get (value, key));
}

bool
sn_value_equal (const sn_value_t *a, const sn_value_t *b)
{
    if (!a || !b)
        return a == b;
    return msgpack_object_equal (*a, *b);
}

//  --------------------------------------------------------------------------
//  Building

//  The packer's sink. Running out of memory is fatal here as in the rest of CZMQ.
static int
s_pack_write (void *data, const char *buf, size_t len)
{
    sn_pack_t *self = (sn_pack_t *) data;
    if (self->size + len > self->capacity) {
        size_t capacity = self->capacity * 2;
        while (capacity < self->size + len)
            capacity *= 2;
        byte *grown = (byte *) realloc (self->data, capacity);
        assert (grown);
        self->data = grown;
        self->capacity = capacity;
    }
    memcpy (self->data + self->size, buf, len);
    self->size += len;
    return 0;
}

sn_pack_t *
sn_pack_new (void)
{
    sn_pack_t *self = (sn_pack_t *) zmalloc (sizeof (sn_pack_t));
    self->capacity = 256;
    self->data = (byte *) zmalloc (self->capacity);
    msgpack_packer_init (&self->packer, self, s_pack_write);
    return self;
}

void
sn_pack_destroy (sn_pack_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        sn_pack_t *self = *self_p;
        free (self->data);
        free (self);
        *self_p = NULL;
    }
}

void
sn_pack_reset (sn_pack_t *self)
{
    assert (self);
    self->size = 0;
}

void
sn_pack_map (sn_pack_t *self, uint32_t entries)
{
    msgpack_pack_map (&self->packer, entries);
}

void
sn_pack_array (sn_pack_t *self, uint32_t elements)
{
    msgpack_pack_array (&self->packer, elements);
}

void
sn_pack_str (sn_pack_t *self, const char *text)
{
    sn_pack_strn (self, text, strlen (text));
}

void
sn_pack_strn (sn_pack_t *self, const char *text, size_t len)
{
    msgpack_pack_str (&self->packer, len);
    msgpack_pack_str_body (&self->packer, text, len);
}

void
sn_pack_bin (sn_pack_t *self, const void *data, size_t size)
{
    msgpack_pack_bin (&self->packer, size);
    msgpack_pack_bin_body (&self->packer, data, size);
}

void
sn_pack_uint (sn_pack_t *self, uint64_t number)
{
    msgpack_pack_uint64 (&self->packer, number);
}

void
sn_pack_int (sn_pack_t *self, int64_t number)
{
    msgpack_pack_int64 (&self->packer, number);
}

void
sn_pack_double (sn_pack_t *self, double number)
{
    msgpack_pack_double (&self->packer, number);
}

void
sn_pack_bool (sn_pack_t *self, bool flag)
{
    if (flag)
        msgpack_pack_true (&self->packer);
    else
        msgpack_pack_false (&self->packer);
}

void
sn_pack_nil (sn_pack_t *self)
{
    msgpack_pack_nil (&self->packer);
}

void
sn_pack_value (sn_pack_t *self, const sn_value_t *value)
{
    if (value)
        msgpack_pack_object (&self->packer, *value);
    else
        msgpack_pack_nil (&self->packer);
}

void
sn_pack_raw (sn_pack_t *self, const void *data, size_t size)
{
    s_pack_write (self, (const char *) data, size);
}

void
sn_pack_kv_str (sn_pack_t *self, const char *key, const char *text)
{
    sn_pack_str (self, key);
    sn_pack_str (self, text);
}

void
sn_pack_kv_uint (sn_pack_t *self, const char *key, uint64_t number)
{
    sn_pack_str (self, key);
    sn_pack_uint (self, number);
}

void
sn_pack_kv_value (sn_pack_t *self, const char *key, const sn_value_t *value)
{
    sn_pack_str (self, key);
    sn_pack_value (self, value);
}

const byte *
sn_pack_data (sn_pack_t *self)
{
    assert (self);
    return self->data;
}

size_t
sn_pack_size (sn_pack_t *self)
{
    assert (self);
    return self->size;
}

zframe_t *
sn_pack_frame (sn_pack_t *self)
{
    assert (self);
    return zframe_new (self->data, self->size);
}

bool
sn_reply_code (const sn_value_t *reply, uint64_t *code)
{
    uint64_t value;
    if (!sn_value_uint (sn_value_get (reply, "code"), &value) || value < 200 || value > 599 ||
        (value >= 300 && value < 400))
        return false;
    if (code)
        *code = value;
    return true;
}

void
sn_pack_error (sn_pack_t *self, uint64_t rid, int code, const char *format, ...)
{
    char text[512];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    sn_pack_reset (self);
    sn_pack_map (self, 3);
    sn_pack_kv_uint (self, "rid", rid);
    sn_pack_str (self, "code");
    sn_pack_int (self, code);
    sn_pack_kv_str (self, "error", text);
}

//  --------------------------------------------------------------------------
//  Selftest

//  Decode bytes given as a C string literal with explicit length; returns the error.
static const char *
s_reject (const char *bytes, size_t size)
{
    const char *error = NULL;
    sn_msg_t *msg = sn_msg_decode (bytes, size, 0, &error);
    assert (msg == NULL);
    assert (error);
    return error;
}

void
sn_msg_test (bool verbose)
{
    //  Bin values (envelope frames the node's actors pass each other) read back as
    //  bytes, and only as bytes
    sn_pack_t *bins = sn_pack_new ();
    sn_pack_array (bins, 3);
    sn_pack_bin (bins, "\0ab\xff", 4);
    sn_pack_bin (bins, "", 0);
    sn_pack_str (bins, "text");
    sn_msg_t *framed = sn_msg_decode_trusted (sn_pack_data (bins), sn_pack_size (bins), NULL);
    assert (framed);
    size_t bin_size = 9;
    const byte *bin = sn_value_bin (sn_value_at (sn_msg_root (framed), 0), &bin_size);
    assert (bin && bin_size == 4 && memcmp (bin, "\0ab\xff", 4) == 0);
    assert (sn_value_bin (sn_value_at (sn_msg_root (framed), 1), &bin_size) && bin_size == 0);
    assert (!sn_value_bin (sn_value_at (sn_msg_root (framed), 2), &bin_size));
    assert (!sn_value_str (sn_value_at (sn_msg_root (framed), 0), NULL));
    sn_msg_destroy (&framed);
    sn_pack_destroy (&bins);

    //  Build a request and read it back through the accessors
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 6);
    sn_pack_kv_str (pack, "op", "put");
    sn_pack_kv_uint (pack, "rid", 42);
    sn_pack_str (pack, "event");
    sn_pack_map (pack, 3);
    sn_pack_kv_str (pack, "name", "ünïcode");
    sn_pack_str (pack, "list");
    sn_pack_array (pack, 3);
    sn_pack_int (pack, -7);
    sn_pack_double (pack, 2.5);
    sn_pack_nil (pack);
    sn_pack_str (pack, "empty");
    sn_pack_str (pack, "");
    sn_pack_str (pack, "ok");
    sn_pack_bool (pack, true);
    sn_pack_str (pack, "big");
    sn_pack_uint (pack, UINT64_MAX);
    sn_pack_str (pack, "neg");
    sn_pack_int (pack, INT64_MIN);

    const char *error = NULL;
    sn_msg_t *msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, &error);
    assert (msg);
    const sn_value_t *root = sn_msg_root (msg);
    assert (sn_value_is (root, SN_TYPE_MAP));
    assert (sn_value_size (root) == 6);
    assert (sn_value_streq (sn_value_get (root, "op"), "put"));
    uint64_t rid;
    assert (sn_value_uint (sn_value_get (root, "rid"), &rid) && rid == 42);
    assert (!sn_reply_code (root, NULL)); //  a request has no code
    assert (sn_value_get (root, "missing") == NULL);
    assert (sn_value_get (sn_value_get (root, "rid"), "x") == NULL);
    const sn_value_t *event = sn_value_get (root, "event");
    char *name = sn_value_get_strdup (event, "name");
    assert (streq (name, "ünïcode"));
    free (name);
    const sn_value_t *list = sn_value_get (event, "list");
    assert (sn_value_size (list) == 3);
    int64_t small;
    assert (sn_value_int (sn_value_at (list, 0), &small) && small == -7);
    assert (!sn_value_uint (sn_value_at (list, 0), NULL));
    double number;
    assert (sn_value_number (sn_value_at (list, 1), &number) && number == 2.5);
    assert (sn_value_type (sn_value_at (list, 2)) == SN_TYPE_NIL);
    assert (sn_value_at (list, 3) == NULL);
    size_t len = 99;
    assert (streq (sn_value_str (sn_value_get (event, "empty"), &len), "") && len == 0);
    size_t key_len;
    const char *key = sn_value_key_at (event, 1, &key_len);
    assert (key_len == 4 && memcmp (key, "list", 4) == 0);
    assert (sn_value_equal (sn_value_value_at (event, 1), list));
    bool flag;
    assert (sn_value_bool (sn_value_get (root, "ok"), &flag) && flag);
    uint64_t big;
    assert (sn_value_uint (sn_value_get (root, "big"), &big) && big == UINT64_MAX);
    assert (!sn_value_int (sn_value_get (root, "big"), NULL));
    int64_t neg;
    assert (sn_value_int (sn_value_get (root, "neg"), &neg) && neg == INT64_MIN);

    //  Copying a subtree reproduces it exactly
    sn_pack_t *copy = sn_pack_new ();
    sn_pack_value (copy, event);
    sn_msg_t *again = sn_msg_decode (sn_pack_data (copy), sn_pack_size (copy), 0, &error);
    assert (again);
    assert (sn_value_equal (sn_msg_root (again), event));
    sn_msg_destroy (&again);
    sn_msg_destroy (&msg);
    sn_msg_destroy (&msg);

    //  The codes a reply may carry: 2xx, 4xx and 5xx
    const uint64_t codes[] = {199, 200, 299, 300, 399, 400, 503, 599, 600};
    const bool answer[] = {false, true, true, false, false, true, true, true, false};
    for (size_t index = 0; index < sizeof codes / sizeof codes[0]; index++) {
        sn_pack_reset (copy);
        sn_pack_map (copy, 1);
        sn_pack_kv_uint (copy, "code", codes[index]);
        again = sn_msg_decode (sn_pack_data (copy), sn_pack_size (copy), 0, &error);
        uint64_t code = 0;
        assert (sn_reply_code (sn_msg_root (again), &code) == answer[index]);
        assert (code == (answer[index] ? codes[index] : 0));
        sn_msg_destroy (&again);
    }
    sn_pack_reset (copy);
    sn_pack_map (copy, 1);
    sn_pack_kv_str (copy, "code", "200");
    again = sn_msg_decode (sn_pack_data (copy), sn_pack_size (copy), 0, &error);
    assert (!sn_reply_code (sn_msg_root (again), NULL));
    sn_msg_destroy (&again);

    //  Hostile frames are refused before msgpack-c allocates anything
    assert (streq (s_reject ("", 0), "empty message"));
    assert (streq (s_reject ("\x81\xa1", 2), "container longer than the message"));
    assert (streq (s_reject ("\xcd\x01", 2), "truncated message"));
    assert (streq (s_reject ("\xdd\xff\xff\xff\xff\x01", 6), "container longer than the message"));
    assert (streq (s_reject ("\xdf\x7f\xff\xff\xff", 5), "container longer than the message"));
    assert (streq (s_reject ("\xdb\xff\xff\xff\xff", 5), "string longer than the message"));
    assert (streq (s_reject ("\xc0\xc0", 2), "trailing bytes after the message"));
    assert (streq (s_reject ("\xc4\x01\x00", 3), "binary and extension types are not accepted"));
    assert (streq (s_reject ("\xd4\x01\x00", 3), "binary and extension types are not accepted"));
    assert (streq (s_reject ("\xc1", 1), "invalid msgpack byte 0xc1"));
    assert (streq (s_reject ("\x81\x01\x02", 3), "map keys must be strings"));
    assert (streq (s_reject ("\x82\xa1"
                             "a"
                             "\x01\xa1"
                             "a"
                             "\x02",
                             7),
                   "duplicate map key"));
    assert (streq (s_reject ("\xa2\xc3\x28", 3), "strings must be UTF-8"));
    assert (streq (s_reject ("\xa3\xed\xa0\x80", 4), "strings must be UTF-8"));
    assert (streq (s_reject ("\xa2\xc0\x80", 3), "strings must be UTF-8"));
    assert (streq (s_reject ("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", 9), "numbers must be finite"));
    assert (streq (s_reject ("\xca\x7f\x80\x00\x00", 5), "numbers must be finite"));

    //  Duplicate keys are found in large maps too, at any depth
    sn_pack_reset (pack);
    sn_pack_array (pack, 1);
    sn_pack_map (pack, 100);
    for (int i = 0; i < 100; i++) {
        char field[16];
        snprintf (field, sizeof field, "k%d", i == 99 ? 42 : i);
        sn_pack_str (pack, field);
        sn_pack_uint (pack, (uint64_t) i);
    }
    assert (streq (s_reject ((const char *) sn_pack_data (pack), sn_pack_size (pack)),
                   "duplicate map key"));

    //  Nesting: SN_MSG_MAX_DEPTH levels pass, one more fails, wherever it is
    byte nested[SN_MSG_MAX_DEPTH + 2];
    memset (nested, 0x91, sizeof nested);
    nested[SN_MSG_MAX_DEPTH] = 0x90;
    msg = sn_msg_decode (nested, SN_MSG_MAX_DEPTH, 0, &error);
    assert (msg == NULL); //  truncated: the last array has no element
    msg = sn_msg_decode (nested, SN_MSG_MAX_DEPTH + 1, 0, &error);
    assert (msg == NULL && streq (error, "nesting too deep"));
    nested[SN_MSG_MAX_DEPTH - 1] = 0x90;
    msg = sn_msg_decode (nested, SN_MSG_MAX_DEPTH, 0, &error);
    assert (msg);
    sn_msg_destroy (&msg);

    //  A frame checked once decodes again without the scan, between actors
    sn_pack_reset (pack);
    sn_pack_map (pack, 1);
    sn_pack_kv_str (pack, "op", "get");
    msg = sn_msg_decode_trusted (sn_pack_data (pack), sn_pack_size (pack), &error);
    assert (msg && sn_value_streq (sn_value_get (sn_msg_root (msg), "op"), "get"));
    sn_msg_destroy (&msg);
    assert (sn_msg_decode_trusted ("\xc0\xc0", 2, &error) == NULL);
    assert (streq (error, "malformed message"));

    //  Its memory is counted from the frame, exactly: every kind of value, containers
    //  big and small, reads back the same; cuts of it all along are refused
    sn_pack_reset (pack);
    sn_pack_map (pack, 4);
    sn_pack_str (pack, "items");
    sn_pack_array (pack, 300);
    for (uint32_t index = 0; index < 300; index++) {
        sn_pack_map (pack, 3);
        sn_pack_kv_uint (pack, "n", (uint64_t) index << (index % 64));
        sn_pack_str (pack, "x");
        sn_pack_double (pack, index / 3.0);
        sn_pack_str (pack, "s");
        sn_pack_strn (pack, "abcdefghijklmnopqrstuvwxyz0123456789", index % 37);
    }
    sn_pack_str (pack, "long");
    char long_text[70000];
    memset (long_text, 'a', sizeof long_text);
    sn_pack_strn (pack, long_text, sizeof long_text);
    sn_pack_str (pack, "bin");
    sn_pack_bin (pack, long_text, 300);
    sn_pack_str (pack, "small");
    sn_pack_array (pack, 5);
    sn_pack_int (pack, -1);
    sn_pack_int (pack, -40000);
    sn_pack_bool (pack, true);
    sn_pack_nil (pack);
    sn_pack_map (pack, 0);
    //  8 for the root's keys and values, 300 items, 300 maps of 3 pairs, 5 small ones
    size_t objects = 0;
    assert (s_count_objects (sn_pack_data (pack), sn_pack_size (pack), &objects));
    assert (objects == 8 + 300 + 300 * 6 + 5);
    msg = sn_msg_decode_trusted (sn_pack_data (pack), sn_pack_size (pack), &error);
    assert (msg);
    sn_msg_t *checked = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, &error);
    assert (checked == NULL && streq (error, "binary and extension types are not accepted"));
    const sn_value_t *items = sn_value_get (sn_msg_root (msg), "items");
    assert (sn_value_size (items) == 300);
    uint64_t shifted = 0;
    assert (sn_value_uint (sn_value_get (sn_value_at (items, 299), "n"), &shifted));
    assert (shifted == (uint64_t) 299 << (299 % 64));
    assert (sn_value_size (sn_value_get (sn_msg_root (msg), "long")) == sizeof long_text);
    assert (sn_value_size (sn_value_get (sn_msg_root (msg), "small")) == 5);
    sn_msg_destroy (&msg);
    for (size_t cut = 1; cut < sn_pack_size (pack); cut += 97)
        assert (sn_msg_decode_trusted (sn_pack_data (pack), cut, &error) == NULL);
    //  Extension values pass between actors as msgpack-c reads them
    msg = sn_msg_decode_trusted ("\x92\xd4\x01\x02\xc7\x02\x05"
                                 "ab",
                                 9, &error);
    assert (msg && sn_value_size (sn_msg_root (msg)) == 2);
    sn_msg_destroy (&msg);
    assert (sn_msg_decode_trusted ("\xdf\xff\xff\xff\xff", 5, &error) == NULL);
    assert (sn_msg_decode_trusted ("", 0, &error) == NULL);

    //  A size cap applies before anything else
    msg = sn_msg_decode ("\xc0", 1, 0, &error);
    assert (msg);
    sn_msg_destroy (&msg);
    sn_pack_reset (pack);
    sn_pack_str (pack, "0123456789");
    msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 4, &error);
    assert (msg == NULL && streq (error, "message too large"));

    //  Every prefix of a valid message is refused, and never crashes
    sn_pack_reset (pack);
    sn_pack_map (pack, 2);
    sn_pack_kv_str (pack, "a", "text");
    sn_pack_str (pack, "b");
    sn_pack_array (pack, 2);
    sn_pack_uint (pack, 70000);
    sn_pack_double (pack, 0.25);
    for (size_t cut = 0; cut < sn_pack_size (pack); cut++)
        assert (sn_msg_decode (sn_pack_data (pack), cut, 0, NULL) == NULL);

    //  Error replies have the standard shape
    sn_pack_error (pack, 9, 404, "no event %s", "k");
    msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, &error);
    assert (msg);
    int64_t code;
    assert (sn_value_int (sn_value_get (sn_msg_root (msg), "code"), &code) && code == 404);
    assert (sn_value_streq (sn_value_get (sn_msg_root (msg), "error"), "no event k"));
    zframe_t *frame = sn_pack_frame (pack);
    assert (zframe_size (frame) == sn_pack_size (pack));
    zframe_destroy (&frame);
    sn_msg_destroy (&msg);

    //  Random bytes never crash the decoder
    byte noise[64];
    for (int round = 0; round < 20000; round++) {
        size_t size = (size_t) (random () % sizeof noise) + 1;
        for (size_t i = 0; i < size; i++)
            noise[i] = (byte) random ();
        msg = sn_msg_decode (noise, size, 0, NULL);
        sn_msg_destroy (&msg);
    }
    if (verbose)
        zsys_info ("sn_msg: all checks passed");
    sn_pack_destroy (&copy);
    sn_pack_destroy (&pack);
    sn_pack_destroy (&pack);
}
