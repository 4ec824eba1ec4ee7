/*  sn_json: JSON at the edges, translated to and from msgpack.

    Text becomes msgpack in two passes. jansson first builds the whole tree: it refuses
    duplicate keys, invalid UTF-8, "\u0000" (C code downstream would cut strings there),
    numbers it cannot hold (integers outside int64_t, reals beyond a double), and
    anything after the value but whitespace; its own depth limit
    (JSON_PARSER_MAX_DEPTH) keeps its recursion bounded. Then we walk the tree once to
    enforce our tighter limits, and only then pack it, so a refused document leaves
    nothing behind in the caller's pack.

    The way back works for everything sn_msg_decode accepts but a map with the same
    key twice: JSON text with duplicates is refused on the way in, so we do not pick a
    winner on the way out either. Integers above INT64_MAX do not fit a jansson
    integer and come out as reals.
*/
#include "sn_json.h"

//  Length of the well-formed UTF-8 sequence at text (avail bytes left), or 0.
static size_t
s_utf8_sequence (const byte *text, size_t avail)
{
    byte lead = text[0];
    size_t extra;
    uint32_t code, min;
    if (lead < 0x80)
        return 1;
    else if ((lead & 0xe0) == 0xc0)
        extra = 1, min = 0x80, code = lead & 0x1f;
    else if ((lead & 0xf0) == 0xe0)
        extra = 2, min = 0x800, code = lead & 0x0f;
    else if ((lead & 0xf8) == 0xf0)
        extra = 3, min = 0x10000, code = lead & 0x07;
    else
        return 0;
    if (avail <= extra)
        return 0;
    for (size_t i = 1; i <= extra; i++) {
        if ((text[i] & 0xc0) != 0x80)
            return 0;
        code = (code << 6) | (text[i] & 0x3f);
    }
    if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
        return 0;
    return extra + 1;
}

static void s_set_error (char *error, size_t size, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

//  Write a reason into the caller's buffer. jansson's messages quote the input they
//  choked on, and clip it at any byte, while our callers put the reason into a JSON
//  reply or a log line: so control bytes and broken UTF-8 become '?', and the text is
//  cut only between characters.
static void
s_set_error (char *error, size_t size, const char *format, ...)
{
    if (!error || size == 0)
        return;
    char text[512];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);

    const byte *from = (const byte *) text;
    size_t left = strlen (text);
    size_t used = 0;
    while (left > 0) {
        size_t length = s_utf8_sequence (from, left);
        bool replace = length == 0 || *from < 0x20 || *from == 0x7f;
        size_t write = replace ? 1 : length;
        if (used + write > size - 1)
            break;
        if (replace)
            error[used] = '?';
        else
            memcpy (error + used, from, length);
        used += write;
        from += replace ? 1 : length;
        left -= replace ? 1 : length;
    }
    error[used] = 0;
}

//  Refuse what msgpack or sn_msg_decode would not take back: nesting deeper than
//  SN_MSG_MAX_DEPTH (depth counts the containers around json) and containers too big
//  for a msgpack length. Recursion stops at the depth limit.
static int
s_check (json_t *json, size_t depth, char *error, size_t size)
{
    if (!json_is_object (json) && !json_is_array (json))
        return 0;
    if (depth == SN_MSG_MAX_DEPTH) {
        s_set_error (error, size, "nesting deeper than %d levels", SN_MSG_MAX_DEPTH);
        return -1;
    }
    if (json_is_object (json)) {
        if (json_object_size (json) > UINT32_MAX) {
            s_set_error (error, size, "object of more than %u members", UINT32_MAX);
            return -1;
        }
        const char *key;
        json_t *member;
        json_object_foreach (json, key, member)
        {
            if (s_check (member, depth + 1, error, size))
                return -1;
        }
    }
    else {
        if (json_array_size (json) > UINT32_MAX) {
            s_set_error (error, size, "array of more than %u elements", UINT32_MAX);
            return -1;
        }
        for (size_t index = 0; index < json_array_size (json); index++)
            if (s_check (json_array_get (json, index), depth + 1, error, size))
                return -1;
    }
    return 0;
}

//  Pack a tree that s_check accepted.
static void
s_pack (json_t *json, sn_pack_t *pack)
{
    switch (json_typeof (json)) {
        case JSON_OBJECT: {
            sn_pack_map (pack, (uint32_t) json_object_size (json));
            const char *key;
            size_t key_len;
            json_t *member;
            json_object_keylen_foreach (json, key, key_len, member)
            {
                sn_pack_strn (pack, key, key_len);
                s_pack (member, pack);
            }
            break;
        }
        case JSON_ARRAY: {
            sn_pack_array (pack, (uint32_t) json_array_size (json));
            for (size_t index = 0; index < json_array_size (json); index++)
                s_pack (json_array_get (json, index), pack);
            break;
        }
        case JSON_STRING:
            sn_pack_strn (pack, json_string_value (json), json_string_length (json));
            break;
        case JSON_INTEGER: {
            json_int_t number = json_integer_value (json);
            if (number < 0)
                sn_pack_int (pack, number);
            else
                sn_pack_uint (pack, (uint64_t) number);
            break;
        }
        case JSON_REAL:
            sn_pack_double (pack, json_real_value (json));
            break;
        case JSON_TRUE:
            sn_pack_bool (pack, true);
            break;
        case JSON_FALSE:
            sn_pack_bool (pack, false);
            break;
        case JSON_NULL:
            sn_pack_nil (pack);
            break;
    }
}

//  True when brackets in text nest deeper than SN_MSG_MAX_DEPTH. jansson parses by
//  recursion down to 2048 levels, which overflows the small stacks of civetweb's
//  threads, so depth is bounded here, in one pass with no recursion, before jansson
//  sees the text. Brackets inside strings do not count; the rest is jansson's job.
static bool
s_too_deep (const char *text, size_t len)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        }
        else if (c == '"')
            in_string = true;
        else if (c == '[' || c == '{') {
            if (++depth > SN_MSG_MAX_DEPTH)
                return true;
        }
        else if (c == ']' || c == '}')
            depth--;
    }
    return false;
}

json_t *
sn_json_parse (const char *text, size_t len, char *error, size_t size)
{
    assert (text || len == 0);
    if (text && s_too_deep (text, len)) {
        s_set_error (error, size, "nesting deeper than %d levels", SN_MSG_MAX_DEPTH);
        return NULL;
    }
    json_error_t parse_error;
    json_t *json =
        json_loadb (text ? text : "", len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &parse_error);
    if (!json) {
        //  jansson stops at its own depth limit, far past ours: the reason that matters
        //  is ours. Its text for "\u0000" names a flag of its API, not a reason.
        enum json_error_code code = json_error_code (&parse_error);
        if (code == json_error_stack_overflow)
            s_set_error (error, size, "nesting deeper than %d levels", SN_MSG_MAX_DEPTH);
        else if (code == json_error_null_character)
            s_set_error (error, size, "invalid JSON at line %d, column %d: \\u0000 is not allowed",
                         parse_error.line, parse_error.column);
        else
            s_set_error (error, size, "invalid JSON at line %d, column %d: %s", parse_error.line,
                         parse_error.column, parse_error.text);
        return NULL;
    }
    if (s_check (json, 0, error, size)) {
        json_decref (json);
        return NULL;
    }
    return json;
}

int
sn_json_pack (json_t *json, sn_pack_t *pack, char *error, size_t size)
{
    assert (json);
    assert (pack);
    if (s_check (json, 0, error, size))
        return -1;
    s_pack (json, pack);
    return 0;
}

int
sn_json_to_pack (const char *text, size_t len, sn_pack_t *pack, char *error, size_t size)
{
    assert (pack);
    json_t *json = sn_json_parse (text, len, error, size);
    if (!json)
        return -1;
    s_pack (json, pack);
    json_decref (json);
    return 0;
}

//  depth counts the containers around value. Decoded values never nest deeper than
//  SN_MSG_MAX_DEPTH; the bound keeps the recursion finite whatever we are given.
static json_t *
s_from_value (const sn_value_t *value, size_t depth)
{
    switch (sn_value_type (value)) {
        case SN_TYPE_NIL:
            return json_null ();
        case SN_TYPE_BOOL: {
            bool flag = false;
            sn_value_bool (value, &flag);
            return json_boolean (flag);
        }
        case SN_TYPE_INT: {
            int64_t number;
            if (sn_value_int (value, &number))
                return json_integer ((json_int_t) number);
            uint64_t big = 0;
            sn_value_uint (value, &big);
            return json_real ((double) big);
        }
        case SN_TYPE_FLOAT: {
            double number = 0;
            sn_value_number (value, &number);
            return json_real (number); //  NULL for what JSON cannot say (NaN, inf)
        }
        case SN_TYPE_STRING: {
            size_t len;
            const char *text = sn_value_str (value, &len);
            return json_stringn (text, len); //  NULL unless UTF-8
        }
        case SN_TYPE_ARRAY: {
            if (depth == SN_MSG_MAX_DEPTH)
                return NULL;
            json_t *array = json_array ();
            size_t count = sn_value_size (value);
            for (size_t index = 0; index < count; index++) {
                json_t *element = s_from_value (sn_value_at (value, index), depth + 1);
                if (!element || json_array_append_new (array, element)) {
                    json_decref (array);
                    return NULL;
                }
            }
            return array;
        }
        case SN_TYPE_MAP: {
            if (depth == SN_MSG_MAX_DEPTH)
                return NULL;
            json_t *object = json_object ();
            size_t count = sn_value_size (value);
            for (size_t index = 0; index < count; index++) {
                size_t key_len;
                const char *key = sn_value_key_at (value, index, &key_len);
                if (json_object_getn (object, key, key_len)) {
                    json_decref (object);
                    return NULL;
                }
                json_t *member = s_from_value (sn_value_value_at (value, index), depth + 1);
                if (!member || json_object_setn_new (object, key, key_len, member)) {
                    json_decref (object);
                    return NULL;
                }
            }
            return object;
        }
    }
    return NULL;
}

json_t *
sn_json_from_value (const sn_value_t *value)
{
    if (!value)
        return NULL;
    return s_from_value (value, 0);
}

char *
sn_json_text (const sn_value_t *value)
{
    json_t *json = sn_json_from_value (value);
    if (!json)
        return NULL;
    char *text = json_dumps (json, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    json_decref (json);
    return text;
}

//  --------------------------------------------------------------------------
//  Selftest

//  JSON text -> msgpack -> sn_msg_decode -> compact JSON text. Returns the text, which
//  the caller frees, or NULL with the reason in error.
static char *
s_round_trip (const char *text, char *error, size_t size)
{
    sn_pack_t *pack = sn_pack_new ();
    char *result = NULL;
    if (sn_json_to_pack (text, strlen (text), pack, error, size) == 0) {
        const char *reason = NULL;
        sn_msg_t *msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, &reason);
        assert (msg);
        result = sn_json_text (sn_msg_root (msg));
        assert (result);

        //  The tree compares equal too, not just the text
        json_t *parsed = sn_json_parse (text, strlen (text), NULL, 0);
        json_t *back = sn_json_from_value (sn_msg_root (msg));
        assert (parsed && back && json_equal (parsed, back));
        json_decref (parsed);
        json_decref (back);
        sn_msg_destroy (&msg);
    }
    sn_pack_destroy (&pack);
    return result;
}

//  Assert that text is refused, that nothing reaches the pack, and that the reason
//  starts with prefix and is itself valid JSON string material.
static void
s_assert_refused (const char *text, size_t len, const char *prefix, bool verbose)
{
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_nil (pack); //  what is already there must stay untouched
    char error[256] = "unset";
    int rc = sn_json_to_pack (text, len, pack, error, sizeof error);
    if (verbose)
        zsys_info ("sn_json: refused: %s", error);
    assert (rc == -1);
    assert (sn_pack_size (pack) == 1);
    assert (strncmp (error, prefix, strlen (prefix)) == 0);
    json_t *as_string = json_string (error);
    assert (as_string);
    json_decref (as_string);
    sn_pack_destroy (&pack);
}

//  Nested arrays, depth levels deep: "[[[]]]" for 3. Caller frees.
static char *
s_nested_arrays (size_t depth)
{
    char *text = (char *) zmalloc (2 * depth + 1);
    memset (text, '[', depth);
    memset (text + depth, ']', depth);
    return text;
}

//  Parse a 100000-deep text on a thread with a 256 KiB stack, as small as a server
//  thread's may be: the depth bound must act before any recursion.
static void *
s_parse_deep_on_small_stack (void *args)
{
    size_t depth = 100000;
    char *text = (char *) zmalloc (2 * depth + 2);
    memset (text, '[', depth);
    text[depth] = '1';
    memset (text + depth + 1, ']', depth);
    char error[128];
    json_t *json = sn_json_parse (text, 2 * depth + 1, error, sizeof error);
    free (text);
    return json ? NULL : strdup (error);
}

void
sn_json_test (bool verbose)
{
    pthread_attr_t attributes;
    pthread_attr_init (&attributes);
    pthread_attr_setstacksize (&attributes, 256 * 1024);
    pthread_t thread;
    assert (pthread_create (&thread, &attributes, s_parse_deep_on_small_stack, NULL) == 0);
    char *deep_error = NULL;
    pthread_join (thread, (void **) &deep_error);
    pthread_attr_destroy (&attributes);
    assert (deep_error && strstr (deep_error, "nesting deeper than"));
    free (deep_error);

    char error[256];

    //  Round trips keep values, types and key order exactly
    const char *same[] = {
        "{\"op\":\"put\",\"rid\":42,\"event\":{\"a\":[1,-2,3.5,true,false,null,\"x\"],\"b\":{}}}",
        "{\"z\":1,\"a\":2,\"m\":3}",
        "{}",
        "[]",
        "[[],{},\"\",[[]]]",
        "{\"\":\"\"}",
        "\"\"",
        "0",
        "-1",
        "1.0",
        "2.5",
        "-0.125",
        "null",
        "true",
        "false",
        "9223372036854775807",
        "-9223372036854775808",
        "\"é中😀\"",
        "{\"ключ\":\"значение\"}",
        "\"quote \\\" backslash \\\\ newline \\n tab \\t control \\u0001\"",
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        char *text = s_round_trip (same[i], error, sizeof error);
        if (verbose)
            zsys_info ("sn_json: %s -> %s", same[i], text ? text : error);
        assert (text);
        assert (streq (text, same[i]));
        free (text);
    }

    //  Equivalent spellings come back in one canonical compact form
    const char *spelled[][2] = {
        {" { \"a\" : [ 1 , 2 ] }\n\t ", "{\"a\":[1,2]}"},
        {"\"\\u00e9\\u4e2d\\ud83d\\ude00\"", "\"é中😀\""},
        {"\"\\/\"", "\"/\""},
        {"1e2", "100.0"},
        {"-0", "0"},
    };
    for (size_t i = 0; i < sizeof spelled / sizeof spelled[0]; i++) {
        char *text = s_round_trip (spelled[i][0], error, sizeof error);
        assert (text);
        assert (streq (text, spelled[i][1]));
        free (text);
    }

    //  JSON integers become msgpack integers, reals doubles
    sn_pack_t *pack = sn_pack_new ();
    const char *numbers = "[7,-7,7.0,18446744073709551615.0]";
    assert (sn_json_to_pack (numbers, strlen (numbers), pack, error, sizeof error) == 0);
    sn_msg_t *msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
    assert (msg);
    const sn_value_t *root = sn_msg_root (msg);
    uint64_t positive;
    assert (sn_value_uint (sn_value_at (root, 0), &positive) && positive == 7);
    int64_t negative;
    assert (sn_value_int (sn_value_at (root, 1), &negative) && negative == -7);
    assert (sn_value_type (sn_value_at (root, 2)) == SN_TYPE_FLOAT);
    assert (sn_value_type (sn_value_at (root, 3)) == SN_TYPE_FLOAT);
    sn_msg_destroy (&msg);

    //  Integers above INT64_MAX have no jansson integer: they come out as reals, and
    //  JSON text holding one is refused rather than silently rounded
    sn_pack_reset (pack);
    sn_pack_array (pack, 2);
    sn_pack_uint (pack, UINT64_MAX);
    sn_pack_uint (pack, (uint64_t) INT64_MAX);
    msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
    assert (msg);
    json_t *json = sn_json_from_value (sn_msg_root (msg));
    assert (json);
    assert (json_is_real (json_array_get (json, 0)));
    assert (json_real_value (json_array_get (json, 0)) == 18446744073709551616.0);
    assert (json_is_integer (json_array_get (json, 1)));
    assert (json_integer_value (json_array_get (json, 1)) == INT64_MAX);
    json_decref (json);
    char *text = sn_json_text (sn_msg_root (msg));
    assert (streq (text, "[1.8446744073709552e19,9223372036854775807]"));
    free (text);
    sn_msg_destroy (&msg);
    s_assert_refused ("18446744073709551615", 20, "invalid JSON at line 1", verbose);
    s_assert_refused ("[-9223372036854775809]", 22, "invalid JSON at line 1", verbose);
    s_assert_refused ("1e400", 5, "invalid JSON at line 1", verbose);

    //  Nesting: SN_MSG_MAX_DEPTH levels pass and decode, one more is refused
    char *deepest = s_nested_arrays (SN_MSG_MAX_DEPTH);
    text = s_round_trip (deepest, error, sizeof error);
    assert (text && streq (text, deepest));
    free (text);
    free (deepest);
    char *too_deep = s_nested_arrays (SN_MSG_MAX_DEPTH + 1);
    s_assert_refused (too_deep, strlen (too_deep), "nesting deeper than 24 levels", verbose);
    free (too_deep);
    //  Objects count the same, scalars do not count
    char deep_object[512] = "";
    for (int level = 0; level < SN_MSG_MAX_DEPTH; level++)
        strcat (deep_object, "{\"a\":");
    strcat (deep_object, "1");
    for (int level = 0; level < SN_MSG_MAX_DEPTH; level++)
        strcat (deep_object, "}");
    text = s_round_trip (deep_object, error, sizeof error);
    assert (text && streq (text, deep_object));
    free (text);
    memmove (deep_object + 1, deep_object, strlen (deep_object) + 1);
    deep_object[0] = '[';
    strcat (deep_object, "]");
    s_assert_refused (deep_object, strlen (deep_object), "nesting deeper than 24 levels", verbose);
    //  jansson's own limit is far deeper; past it parsing still ends in an error
    too_deep = s_nested_arrays (100000);
    s_assert_refused (too_deep, 100000, "nesting deeper than 24 levels", verbose);
    s_assert_refused (too_deep, 200000, "nesting deeper than 24 levels", verbose);
    free (too_deep);
    //  A tree built in code is held to the same limit, and nothing is packed
    json_t *tower = json_array ();
    for (int level = 1; level <= SN_MSG_MAX_DEPTH; level++)
        tower = json_pack ("[o]", tower);
    sn_pack_reset (pack);
    assert (sn_json_pack (tower, pack, error, sizeof error) == -1);
    assert (streq (error, "nesting deeper than 24 levels"));
    assert (sn_pack_size (pack) == 0);
    assert (sn_json_pack (json_array_get (tower, 0), pack, error, sizeof error) == 0);
    assert (sn_pack_size (pack) == SN_MSG_MAX_DEPTH);
    json_decref (tower);
    //  From msgpack, the deepest value sn_msg_decode accepts has a JSON form
    sn_pack_reset (pack);
    for (int level = 1; level < SN_MSG_MAX_DEPTH; level++) {
        sn_pack_map (pack, 1);
        sn_pack_str (pack, "k");
    }
    sn_pack_array (pack, 0);
    msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
    assert (msg);
    json = sn_json_from_value (sn_msg_root (msg));
    assert (json);
    sn_pack_reset (pack);
    assert (sn_json_pack (json, pack, error, sizeof error) == 0);
    sn_msg_t *again = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
    assert (again && sn_value_equal (sn_msg_root (again), sn_msg_root (msg)));
    sn_msg_destroy (&again);
    json_decref (json);
    sn_msg_destroy (&msg);

    //  Duplicate keys are refused both ways
    s_assert_refused ("{\"a\":1,\"a\":2}", 13, "invalid JSON at line 1, column 10: duplicate",
                      verbose);
    s_assert_refused ("{\"x\":[{\"b\":1,\"b\":1}]}", 21, "invalid JSON at line 1", verbose);
    sn_pack_reset (pack);
    sn_pack_map (pack, 2);
    sn_pack_kv_uint (pack, "a", 1);
    sn_pack_kv_uint (pack, "a", 2);
    const char *reason = NULL;
    msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, &reason);
    assert (msg == NULL && streq (reason, "duplicate map key"));
    assert (sn_json_from_value (NULL) == NULL);
    assert (sn_json_text (NULL) == NULL);

    //  NUL is refused in JSON text, but a msgpack string holding one still converts
    s_assert_refused ("\"a\\u0000b\"", 10,
                      "invalid JSON at line 1, column 10: \\u0000 is not allowed", verbose);
    s_assert_refused ("{\"a\\u0000b\":1}", 14, "invalid JSON at line 1", verbose);
    s_assert_refused ("\"a\0b\"", 5, "invalid JSON at line 1", verbose);
    sn_pack_reset (pack);
    sn_pack_map (pack, 1);
    sn_pack_strn (pack, "k\0y", 3);
    sn_pack_strn (pack, "a\0b", 3);
    msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
    assert (msg);
    text = sn_json_text (sn_msg_root (msg));
    assert (streq (text, "{\"k\\u0000y\":\"a\\u0000b\"}"));
    free (text);
    sn_msg_destroy (&msg);

    //  Unicode that is not UTF-8, or not a character, is refused, and the reason is
    //  still clean UTF-8 even when it quotes the offending input
    s_assert_refused ("\"\xff\"", 3, "invalid JSON at line 1", verbose);
    s_assert_refused ("\"\xc3\x28\"", 4, "invalid JSON at line 1", verbose);
    s_assert_refused ("\"\xed\xa0\x80\"", 5, "invalid JSON at line 1", verbose);
    s_assert_refused ("\"\\ud800\"", 8, "invalid JSON at line 1", verbose);
    s_assert_refused ("\"\\udc00\\ud800\"", 14, "invalid JSON at line 1", verbose);
    s_assert_refused ("[\"é\", tr\xc3", 10, "invalid JSON at line 1", verbose);
    s_assert_refused ("[é]", 4, "invalid JSON at line 1", verbose);

    //  Invalid JSON says where
    s_assert_refused ("", 0, "invalid JSON at line 1", verbose);
    s_assert_refused (NULL, 0, "invalid JSON at line 1", verbose);
    s_assert_refused (" \n ", 3, "invalid JSON at line 2", verbose);
    s_assert_refused ("{\"a\":}", 6, "invalid JSON at line 1, column 6: ", verbose);
    s_assert_refused ("{\n  \"a\": ,\n}", 12, "invalid JSON at line 2, column ", verbose);
    s_assert_refused ("[1,]", 4, "invalid JSON at line 1", verbose);
    s_assert_refused ("{'a':1}", 7, "invalid JSON at line 1", verbose);
    s_assert_refused ("{\"a\" 1}", 7, "invalid JSON at line 1", verbose);
    s_assert_refused ("{1:1}", 5, "invalid JSON at line 1", verbose);
    s_assert_refused ("NaN", 3, "invalid JSON at line 1", verbose);
    s_assert_refused ("tru", 3, "invalid JSON at line 1", verbose);
    s_assert_refused ("[1", 2, "invalid JSON at line 1", verbose);
    s_assert_refused ("\"unterminated", 13, "invalid JSON at line 1", verbose);
    s_assert_refused ("\"tab\tinside\"", 12, "invalid JSON at line 1", verbose);
    s_assert_refused ("01", 2, "invalid JSON at line 1", verbose);

    //  Trailing garbage is an error; trailing whitespace is not
    s_assert_refused ("{} x", 4, "invalid JSON at line 1, column 4: ", verbose);
    s_assert_refused ("{}{}", 4, "invalid JSON at line 1", verbose);
    s_assert_refused ("1 2", 3, "invalid JSON at line 1", verbose);
    s_assert_refused ("[]\n]", 4, "invalid JSON at line 2", verbose);
    sn_pack_reset (pack);
    assert (sn_json_to_pack ("{}  \r\n\t", 7, pack, error, sizeof error) == 0);
    assert (sn_pack_size (pack) == 1);

    //  Only len bytes are read: the text need not end in NUL
    const char buffer[] = {'[', '1', ',', '2', ']', 'x', 'y'};
    sn_pack_reset (pack);
    assert (sn_json_to_pack (buffer, 5, pack, error, sizeof error) == 0);
    json = sn_json_parse (buffer, 5, error, sizeof error);
    assert (json && json_array_size (json) == 2);
    json_decref (json);

    //  Packing appends after what the pack already holds
    sn_pack_reset (pack);
    sn_pack_array (pack, 2);
    sn_pack_str (pack, "head");
    assert (sn_json_to_pack ("{\"b\":[true]}", 12, pack, error, sizeof error) == 0);
    msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
    assert (msg);
    text = sn_json_text (sn_msg_root (msg));
    assert (streq (text, "[\"head\",{\"b\":[true]}]"));
    free (text);
    sn_msg_destroy (&msg);

    //  The reason always fits the caller's buffer, and may be skipped entirely
    char small[12];
    assert (sn_json_parse ("{\"a\":}", 6, small, sizeof small) == NULL);
    assert (streq (small, "invalid JSO"));
    assert (sn_json_parse ("{\"a\":}", 6, small, 1) == NULL);
    assert (small[0] == 0);
    assert (sn_json_parse ("{\"a\":}", 6, NULL, 0) == NULL);
    //  A cut never lands inside a character
    s_set_error (small, 6, "%s", "abcé");
    assert (streq (small, "abcé"));
    s_set_error (small, 5, "%s", "abcé");
    assert (streq (small, "abc"));
    s_set_error (small, sizeof small, "a\x01\xff\xe4\xb8z");
    assert (streq (small, "a????z"));

    //  Garbage of every kind ends in an error or a value, never a crash or a leak
    char noise[48];
    const char alphabet[] = "{}[]:,\"\\ 0123456789.eE-+truefalsnul\xc3\xa9\xff";
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t) (random () % sizeof noise);
        for (size_t i = 0; i < len; i++)
            noise[i] = alphabet[random () % (sizeof alphabet - 1)];
        sn_pack_reset (pack);
        if (sn_json_to_pack (noise, len, pack, error, sizeof error) == 0) {
            msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
            assert (msg);
            text = sn_json_text (sn_msg_root (msg));
            assert (text);
            free (text);
            sn_msg_destroy (&msg);
        }
    }
    sn_pack_destroy (&pack);
    if (verbose)
        zsys_info ("sn_json: all checks passed");
}
