/*  sn_schema: the JSON Schemas of every op and stored event type, and their validator.

    What a schema author can rely on, beyond sn_schema.h:
    - "integer" means a msgpack integer: 1.0 sent as a float is a number, not an
      integer, since the code reading the field would refuse it too.
    - minLength and maxLength count bytes of UTF-8, not characters.
    - A string with minLength or maxLength holds no NUL byte: such strings are ids,
      names, tokens and URLs, which the code reading them takes as C strings, where a
      NUL would cut them short ("a\0b" read as "a").
    - enum holds strings, numbers, booleans and null; numbers compare by value.
    - A keyword for another type is ignored, as JSON Schema says (maxLength on a value
      that turns out to be an integer). Annotations (title, description, $comment) are
      ignored. A validation keyword we do not implement (pattern, oneOf, $ref, ...) or
      one with the wrong shape makes the schema fail to load: nobody should believe a
      constraint holds that is never checked.
    - The first error found is reported. Under an object, required fields are checked
      before the fields present, which are checked in the order they came.
    - A map may hold the same key twice (sn_msg_decode accepts that); each entry is
      checked against the schema of its key.

    Errors quote keys that clients chose, so each key is clipped to S_TOKEN_MAX bytes,
    control bytes become '?', and every message is cut only between UTF-8 characters:
    they end up in JSON replies and log lines.
*/
#include "sn_schema.h"
#include "sn_json.h" //  jansson, and JSON-to-msgpack for the selftest
#include <pthread.h>

//  Longest part of a client's key or op name quoted in an error
#define S_TOKEN_MAX 32

//  Longest op name worth looking up; no schema has a longer one
#define S_OP_NAME_MAX 64

//  A pointer of SN_MSG_MAX_DEPTH clipped and escaped tokens, and its NUL
#define S_POINTER_MAX (SN_MSG_MAX_DEPTH * (2 * S_TOKEN_MAX + 8) + 1)

struct _sn_schema_t {
    json_t *schemas; //  name -> parsed schema. A jansson object, not a zhashx: a
                     //  jansson lookup writes nothing, while zhashx stores the bucket
                     //  it looked at in the hash, so only this one threads can share
};

//  One check in progress.
typedef struct {
    char pointer[S_POINTER_MAX]; //  JSON pointer of the value being checked
    size_t length;               //  bytes used in pointer
    char *error;                 //  the caller's buffer for the first error, or NULL
    size_t size;                 //  bytes in error
} s_walk_t;

static const char *s_type_names[] = {"object", "array",   "string", "integer",
                                     "number", "boolean", "null",   NULL};

//  Keywords whose argument is a count
static const char *s_count_keywords[] = {"minLength",     "maxLength", "minItems", "maxItems",
                                         "maxProperties", "maxDepth",  "maxBytes", NULL};

//  Validation keywords of JSON Schema that this validator does not implement
static const char *s_unsupported_keywords[] = {
    //  combining and referencing
    "$ref", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    //  constraints on values
    "const", "pattern", "format", "multipleOf", "exclusiveMinimum", "exclusiveMaximum",
    //  constraints on objects and arrays
    "patternProperties", "propertyNames", "dependencies", "dependentRequired", "dependentSchemas",
    "minProperties", "unevaluatedProperties", "uniqueItems", "contains", "additionalItems",
    "prefixItems", "unevaluatedItems", NULL};

static bool
s_listed (const char **list, const char *word)
{
    for (; *list; list++)
        if (streq (*list, word))
            return true;
    return false;
}

static const char *
s_plural (json_int_t count)
{
    return count == 1 ? "" : "s";
}

//  Append len bytes of text to buf, which holds *used bytes and a NUL in size bytes:
//  as much as fits, cut between UTF-8 characters, never past the end.
static void
s_append (char *buf, size_t size, size_t *used, const char *text, size_t len)
{
    if (*used + 1 >= size)
        return;
    size_t room = size - 1 - *used;
    if (len > room) {
        len = room;
        while (len > 0 && ((byte) text[len] & 0xc0) == 0x80)
            len--;
    }
    memcpy (buf + *used, text, len);
    *used += len;
    buf[*used] = 0;
}

static void
s_append_str (char *buf, size_t size, size_t *used, const char *text)
{
    s_append (buf, size, used, text, strlen (text));
}

//  Write text into the caller's error buffer, if there is one.
static void
s_set_error (char *error, size_t size, const char *text)
{
    if (!error || size == 0)
        return;
    size_t used = 0;
    error[0] = 0;
    s_append_str (error, size, &used, text);
}

//  --------------------------------------------------------------------------
//  Pointers and errors

//  Append one key to the pointer, escaped per RFC 6901 and clipped. Returns the length
//  to restore with s_pop.
static size_t
s_push_key (s_walk_t *walk, const char *key, size_t len)
{
    size_t mark = walk->length;
    char token[2 * S_TOKEN_MAX + 8];
    size_t used = 0;
    size_t take = len;
    if (take > S_TOKEN_MAX) {
        take = S_TOKEN_MAX;
        while (take > 0 && ((byte) key[take] & 0xc0) == 0x80)
            take--;
    }
    token[used++] = '/';
    for (size_t i = 0; i < take; i++) {
        byte c = (byte) key[i];
        if (c == '~' || c == '/') {
            token[used++] = '~';
            token[used++] = c == '~' ? '0' : '1';
        }
        else
            token[used++] = c < 0x20 || c == 0x7f ? '?' : (char) c;
    }
    if (take < len) {
        memcpy (token + used, "...", 3);
        used += 3;
    }
    s_append (walk->pointer, sizeof walk->pointer, &walk->length, token, used);
    return mark;
}

static size_t
s_push_index (s_walk_t *walk, size_t index)
{
    size_t mark = walk->length;
    char token[32];
    int len = snprintf (token, sizeof token, "/%zu", index);
    s_append (walk->pointer, sizeof walk->pointer, &walk->length, token, (size_t) len);
    return mark;
}

static void
s_pop (s_walk_t *walk, size_t mark)
{
    walk->length = mark;
    walk->pointer[mark] = 0;
}

//  Report what is wrong at the current pointer. Returns -1 for the caller to return.
static int
s_fail (s_walk_t *walk, const char *what)
{
    if (walk->error && walk->size > 0) {
        size_t used = 0;
        walk->error[0] = 0;
        s_append_str (walk->error, walk->size, &used, walk->length ? walk->pointer : "/");
        s_append_str (walk->error, walk->size, &used, ": ");
        s_append_str (walk->error, walk->size, &used, what);
    }
    return -1;
}

static int s_failf (s_walk_t *walk, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static int
s_failf (s_walk_t *walk, const char *format, ...)
{
    char what[256];
    va_list args;
    va_start (args, format);
    vsnprintf (what, sizeof what, format, args);
    va_end (args);
    return s_fail (walk, what);
}

//  A schema's number as text, for errors.
static void
s_number_text (json_t *number, char *text, size_t size)
{
    if (json_is_integer (number))
        snprintf (text, size, "%" JSON_INTEGER_FORMAT, json_integer_value (number));
    else
        snprintf (text, size, "%g", json_real_value (number));
}

//  --------------------------------------------------------------------------
//  Keywords

static bool
s_type_matches (const char *name, sn_type_t type)
{
    if (streq (name, "object"))
        return type == SN_TYPE_MAP;
    if (streq (name, "array"))
        return type == SN_TYPE_ARRAY;
    if (streq (name, "string"))
        return type == SN_TYPE_STRING;
    if (streq (name, "integer"))
        return type == SN_TYPE_INT;
    if (streq (name, "number"))
        return type == SN_TYPE_INT || type == SN_TYPE_FLOAT;
    if (streq (name, "boolean"))
        return type == SN_TYPE_BOOL;
    if (streq (name, "null"))
        return type == SN_TYPE_NIL;
    return false;
}

static int
s_check_type (s_walk_t *walk, json_t *type, const sn_value_t *value)
{
    sn_type_t actual = sn_value_type (value);
    char what[128] = "";
    size_t used = 0;
    s_append_str (what, sizeof what, &used, "expected ");
    if (json_is_string (type)) {
        if (s_type_matches (json_string_value (type), actual))
            return 0;
        s_append_str (what, sizeof what, &used, json_string_value (type));
    }
    else {
        size_t count = json_array_size (type);
        for (size_t index = 0; index < count; index++)
            if (s_type_matches (json_string_value (json_array_get (type, index)), actual))
                return 0;
        for (size_t index = 0; index < count; index++) {
            if (index > 0)
                s_append_str (what, sizeof what, &used, " or ");
            s_append_str (what, sizeof what, &used,
                          json_string_value (json_array_get (type, index)));
        }
    }
    return s_fail (walk, what);
}

//  Compare a number value with a schema's number: -1, 0 or 1 as value is below, at or
//  above it. Integers compare exactly; anything involving a real compares as doubles.
static int
s_compare (const sn_value_t *value, json_t *bound)
{
    if (json_is_integer (bound)) {
        json_int_t limit = json_integer_value (bound);
        int64_t whole;
        if (sn_value_int (value, &whole))
            return whole < limit ? -1 : whole > limit;
        if (sn_value_uint (value, NULL))
            return 1; //  above INT64_MAX, so above any jansson integer
    }
    double number = 0;
    sn_value_number (value, &number);
    double limit = json_number_value (bound);
    return number < limit ? -1 : number > limit;
}

static bool
s_enum_has (json_t *choices, const sn_value_t *value)
{
    for (size_t index = 0; index < json_array_size (choices); index++) {
        json_t *choice = json_array_get (choices, index);
        switch (json_typeof (choice)) {
            case JSON_STRING: {
                size_t len;
                const char *text = sn_value_str (value, &len);
                if (text && len == json_string_length (choice) &&
                    memcmp (text, json_string_value (choice), len) == 0)
                    return true;
                break;
            }
            case JSON_INTEGER:
            case JSON_REAL:
                if (sn_value_number (value, NULL) && s_compare (value, choice) == 0)
                    return true;
                break;
            case JSON_TRUE:
            case JSON_FALSE: {
                bool flag;
                if (sn_value_bool (value, &flag) && flag == json_is_true (choice))
                    return true;
                break;
            }
            case JSON_NULL:
                if (sn_value_is (value, SN_TYPE_NIL))
                    return true;
                break;
            default:
                break;
        }
    }
    return false;
}

static int
s_fail_enum (s_walk_t *walk, json_t *choices)
{
    char what[256] = "";
    size_t used = 0;
    s_append_str (what, sizeof what, &used, "must be one of ");
    for (size_t index = 0; index < json_array_size (choices); index++) {
        json_t *choice = json_array_get (choices, index);
        if (index > 0)
            s_append_str (what, sizeof what, &used, ", ");
        char number[32];
        if (json_is_string (choice))
            s_append (what, sizeof what, &used, json_string_value (choice),
                      json_string_length (choice));
        else if (json_is_number (choice)) {
            s_number_text (choice, number, sizeof number);
            s_append_str (what, sizeof what, &used, number);
        }
        else
            s_append_str (what, sizeof what, &used,
                          json_is_null (choice)   ? "null"
                          : json_is_true (choice) ? "true"
                                                  : "false");
    }
    return s_fail (walk, what);
}

//  Containers nested in value, itself included: 0 for a scalar, 1 for {} or [1], 2 for
//  {"a":{}}. Exact up to limit; past it, counting stops at the first proof.
static size_t
s_depth (const sn_value_t *value, size_t limit)
{
    sn_type_t type = sn_value_type (value);
    if (type != SN_TYPE_ARRAY && type != SN_TYPE_MAP)
        return 0;
    if (limit == 0)
        return 1;
    size_t deepest = 0;
    size_t count = sn_value_size (value);
    for (size_t index = 0; index < count && deepest < limit; index++) {
        const sn_value_t *child =
            type == SN_TYPE_ARRAY ? sn_value_at (value, index) : sn_value_value_at (value, index);
        size_t depth = s_depth (child, limit - 1);
        if (depth > deepest)
            deepest = depth;
    }
    return deepest + 1;
}

static int
s_check_number (s_walk_t *walk, json_t *schema, const sn_value_t *value)
{
    char bound[32];
    json_t *minimum = json_object_get (schema, "minimum");
    if (minimum && s_compare (value, minimum) < 0) {
        s_number_text (minimum, bound, sizeof bound);
        return s_failf (walk, "less than %s", bound);
    }
    json_t *maximum = json_object_get (schema, "maximum");
    if (maximum && s_compare (value, maximum) > 0) {
        s_number_text (maximum, bound, sizeof bound);
        return s_failf (walk, "greater than %s", bound);
    }
    return 0;
}

static int
s_check_string (s_walk_t *walk, json_t *schema, const sn_value_t *value)
{
    json_int_t length = (json_int_t) sn_value_size (value);
    json_t *min_length = json_object_get (schema, "minLength");
    json_t *max_length = json_object_get (schema, "maxLength");
    size_t size = 0;
    const char *text = sn_value_str (value, &size);
    if ((min_length || max_length) && text && memchr (text, 0, size))
        return s_failf (walk, "holds a NUL byte");
    if (min_length && length < json_integer_value (min_length))
        return s_failf (walk, "shorter than %" JSON_INTEGER_FORMAT,
                        json_integer_value (min_length));
    if (max_length && length > json_integer_value (max_length))
        return s_failf (walk, "longer than %" JSON_INTEGER_FORMAT, json_integer_value (max_length));
    return 0;
}

static int s_validate (s_walk_t *walk, json_t *schema, const sn_value_t *value, size_t level);

static int
s_check_array (s_walk_t *walk, json_t *schema, const sn_value_t *value, size_t level)
{
    json_int_t count = (json_int_t) sn_value_size (value);
    json_t *min_items = json_object_get (schema, "minItems");
    if (min_items && count < json_integer_value (min_items))
        return s_failf (walk, "fewer than %" JSON_INTEGER_FORMAT " item%s",
                        json_integer_value (min_items), s_plural (json_integer_value (min_items)));
    json_t *max_items = json_object_get (schema, "maxItems");
    if (max_items && count > json_integer_value (max_items))
        return s_failf (walk, "more than %" JSON_INTEGER_FORMAT " item%s",
                        json_integer_value (max_items), s_plural (json_integer_value (max_items)));
    json_t *items = json_object_get (schema, "items");
    if (items)
        for (size_t index = 0; index < (size_t) count; index++) {
            size_t mark = s_push_index (walk, index);
            if (s_validate (walk, items, sn_value_at (value, index), level + 1))
                return -1;
            s_pop (walk, mark);
        }
    return 0;
}

static int
s_check_object (s_walk_t *walk, json_t *schema, const sn_value_t *value, size_t level)
{
    size_t count = sn_value_size (value);
    json_t *max_properties = json_object_get (schema, "maxProperties");
    if (max_properties && (json_int_t) count > json_integer_value (max_properties))
        return s_failf (walk, "more than %" JSON_INTEGER_FORMAT " field%s",
                        json_integer_value (max_properties),
                        s_plural (json_integer_value (max_properties)));

    json_t *required = json_object_get (schema, "required");
    for (size_t index = 0; index < json_array_size (required); index++) {
        json_t *name = json_array_get (required, index);
        if (!sn_value_get (value, json_string_value (name))) {
            s_push_key (walk, json_string_value (name), json_string_length (name));
            return s_fail (walk, "required");
        }
    }

    json_t *properties = json_object_get (schema, "properties");
    json_t *additional = json_object_get (schema, "additionalProperties");
    for (size_t index = 0; index < count; index++) {
        size_t key_len;
        const char *key = sn_value_key_at (value, index, &key_len);
        json_t *member = json_object_getn (properties, key, key_len);
        if (!member && json_is_object (additional))
            member = additional;
        size_t mark = s_push_key (walk, key, key_len);
        if (member) {
            if (s_validate (walk, member, sn_value_value_at (value, index), level + 1))
                return -1;
        }
        else if (json_is_false (additional))
            return s_fail (walk, "unknown field");
        s_pop (walk, mark);
    }
    return 0;
}

//  Check value, level containers down from where the check started, against schema.
//  Keywords for other types than the value's are skipped, as JSON Schema says.
static int
s_validate (s_walk_t *walk, json_t *schema, const sn_value_t *value, size_t level)
{
    //  Decoded values never nest deeper; the recursion ends whatever it is given
    if (level > SN_MSG_MAX_DEPTH)
        return s_fail (walk, "nested too deep");

    json_t *type = json_object_get (schema, "type");
    if (type && s_check_type (walk, type, value))
        return -1;
    json_t *choices = json_object_get (schema, "enum");
    if (choices && !s_enum_has (choices, value))
        return s_fail_enum (walk, choices);
    json_t *max_depth = json_object_get (schema, "maxDepth");
    if (max_depth) {
        json_int_t limit = json_integer_value (max_depth);
        if (s_depth (value, (size_t) limit) > (size_t) limit)
            return s_failf (walk, "nested deeper than %" JSON_INTEGER_FORMAT " level%s", limit,
                            s_plural (limit));
    }
    switch (sn_value_type (value)) {
        case SN_TYPE_INT:
        case SN_TYPE_FLOAT:
            return s_check_number (walk, schema, value);
        case SN_TYPE_STRING:
            return s_check_string (walk, schema, value);
        case SN_TYPE_ARRAY:
            return s_check_array (walk, schema, value, level);
        case SN_TYPE_MAP:
            return s_check_object (walk, schema, value, level);
        default:
            return 0;
    }
}

static int
s_check (json_t *schema, const sn_value_t *value, char *error, size_t size)
{
    s_walk_t walk = {.length = 0, .error = error, .size = size};
    walk.pointer[0] = 0;
    return s_validate (&walk, schema, value, 0);
}

//  --------------------------------------------------------------------------
//  Loading

//  What is wrong with one keyword's argument, or NULL. The subschemas inside
//  properties, additionalProperties and items are checked by s_lint.
static const char *
s_lint_keyword (const char *keyword, json_t *argument)
{
    if (streq (keyword, "type")) {
        if (json_is_string (argument))
            return s_listed (s_type_names, json_string_value (argument)) ? NULL : "unknown type";
        if (!json_is_array (argument) || json_array_size (argument) == 0)
            return "must be a type or a list of types";
        for (size_t index = 0; index < json_array_size (argument); index++) {
            json_t *element = json_array_get (argument, index);
            if (!json_is_string (element) || !s_listed (s_type_names, json_string_value (element)))
                return "unknown type";
        }
    }
    else if (streq (keyword, "required")) {
        if (!json_is_array (argument))
            return "must be a list of field names";
        for (size_t index = 0; index < json_array_size (argument); index++)
            if (!json_is_string (json_array_get (argument, index)))
                return "must be a list of field names";
    }
    else if (streq (keyword, "properties") || streq (keyword, "items")) {
        if (!json_is_object (argument))
            return "must be an object";
    }
    else if (streq (keyword, "additionalProperties")) {
        if (!json_is_object (argument) && !json_is_boolean (argument))
            return "must be a boolean or a schema";
    }
    else if (streq (keyword, "enum")) {
        if (!json_is_array (argument) || json_array_size (argument) == 0)
            return "must be a list of values";
        for (size_t index = 0; index < json_array_size (argument); index++) {
            json_t *element = json_array_get (argument, index);
            if (json_is_object (element) || json_is_array (element))
                return "holds strings, numbers, booleans and null only";
        }
    }
    else if (streq (keyword, "minimum") || streq (keyword, "maximum")) {
        if (!json_is_number (argument))
            return "must be a number";
    }
    else if (s_listed (s_count_keywords, keyword)) {
        if (!json_is_integer (argument) || json_integer_value (argument) < 0)
            return "must be a non-negative integer";
    }
    else if (s_listed (s_unsupported_keywords, keyword))
        return "is not supported by this validator";
    return NULL;
}

//  Check that schema uses our keywords with the shapes the validator relies on. path
//  is where schema sits in its file, for the error.
static int
s_lint (json_t *schema, const char *path, char *error, size_t size)
{
    char text[512];
    if (!json_is_object (schema)) {
        snprintf (text, sizeof text, "%s: a schema must be an object", *path ? path : "/");
        s_set_error (error, size, text);
        return -1;
    }
    const char *keyword;
    json_t *argument;
    json_object_foreach (schema, keyword, argument)
    {
        const char *problem = s_lint_keyword (keyword, argument);
        if (problem) {
            snprintf (text, sizeof text, "%s/%s: %s", path, keyword, problem);
            s_set_error (error, size, text);
            return -1;
        }
    }
    char inner[256];
    const char *name;
    json_t *member;
    json_object_foreach (json_object_get (schema, "properties"), name, member)
    {
        snprintf (inner, sizeof inner, "%s/properties/%s", path, name);
        if (s_lint (member, inner, error, size))
            return -1;
    }
    json_t *additional = json_object_get (schema, "additionalProperties");
    snprintf (inner, sizeof inner, "%s/additionalProperties", path);
    if (json_is_object (additional) && s_lint (additional, inner, error, size))
        return -1;
    json_t *items = json_object_get (schema, "items");
    snprintf (inner, sizeof inner, "%s/items", path);
    if (items && s_lint (items, inner, error, size))
        return -1;
    return 0;
}

sn_schema_t *
sn_schema_new (void)
{
    sn_schema_t *self = (sn_schema_t *) zmalloc (sizeof (sn_schema_t));
    self->schemas = json_object ();
    for (const sn_schema_source_t *source = sn_schema_sources; source->name; source++) {
        json_error_t parse_error;
        json_t *schema = json_loads (source->text, JSON_REJECT_DUPLICATES, &parse_error);
        if (!schema) {
            zsys_error ("sn_schema: %s.json does not parse: line %d, column %d: %s", source->name,
                        parse_error.line, parse_error.column, parse_error.text);
            sn_schema_destroy (&self);
            return NULL;
        }
        char problem[512];
        if (s_lint (schema, "", problem, sizeof problem)) {
            zsys_error ("sn_schema: %s.json: %s", source->name, problem);
            json_decref (schema);
            sn_schema_destroy (&self);
            return NULL;
        }
        json_object_set_new (self->schemas, source->name, schema);
    }
    return self;
}

void
sn_schema_destroy (sn_schema_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        sn_schema_t *self = *self_p;
        json_decref (self->schemas);
        free (self);
        *self_p = NULL;
    }
}

bool
sn_schema_has (sn_schema_t *self, const char *name)
{
    assert (self);
    return name && json_object_get (self->schemas, name) != NULL;
}

int
sn_schema_check (sn_schema_t *self, const char *name, const sn_value_t *value, char *error,
                 size_t size)
{
    assert (self);
    assert (name);
    json_t *schema = json_object_get (self->schemas, name);
    if (!schema) {
        char text[S_OP_NAME_MAX + 32];
        snprintf (text, sizeof text, "no schema called '%s'", name);
        s_set_error (error, size, text);
        return -1;
    }
    return s_check (schema, value, error, size);
}

int
sn_schema_check_request (sn_schema_t *self, const sn_value_t *request, size_t frame_size,
                         char *error, size_t size)
{
    assert (self);
    s_walk_t walk = {.length = 0, .error = error, .size = size};
    walk.pointer[0] = 0;
    if (!sn_value_is (request, SN_TYPE_MAP)) {
        s_fail (&walk, "expected object");
        return 400;
    }
    s_push_key (&walk, "op", 2);
    const sn_value_t *op = sn_value_get (request, "op");
    if (!op) {
        s_fail (&walk, "required");
        return 400;
    }
    size_t op_len;
    const char *op_name = sn_value_str (op, &op_len);
    if (!op_name) {
        s_fail (&walk, "expected string");
        return 400;
    }

    json_t *schema = NULL;
    if (op_len <= S_OP_NAME_MAX) {
        char name[S_OP_NAME_MAX + 3];
        memcpy (name, "op.", 3);
        memcpy (name + 3, op_name, op_len);
        schema = json_object_getn (self->schemas, name, op_len + 3);
    }
    if (!schema) {
        //  The name is the client's: quote a little of it, and only printable ASCII
        char quoted[S_TOKEN_MAX + 4];
        size_t quote_len = op_len < S_TOKEN_MAX ? op_len : S_TOKEN_MAX;
        for (size_t i = 0; i < quote_len; i++) {
            byte c = (byte) op_name[i];
            quoted[i] = c >= 0x20 && c < 0x7f ? (char) c : '?';
        }
        strcpy (quoted + quote_len, op_len > S_TOKEN_MAX ? "..." : "");
        s_failf (&walk, "unknown op '%s'", quoted);
        return 400;
    }
    json_t *max_bytes = json_object_get (schema, "maxBytes");
    if (max_bytes && (json_int_t) frame_size > json_integer_value (max_bytes)) {
        char text[96];
        snprintf (text, sizeof text, "request of %zu bytes is larger than %" JSON_INTEGER_FORMAT,
                  frame_size, json_integer_value (max_bytes));
        s_set_error (error, size, text);
        return 413;
    }
    return s_check (schema, request, error, size) ? 400 : 0;
}

//  --------------------------------------------------------------------------
//  Selftest

//  Decode JSON text into a message through msgpack, as a request arrives. Caller
//  destroys; *size_p is the encoded size.
static sn_msg_t *
s_message (const char *json, size_t *size_p)
{
    sn_pack_t *pack = sn_pack_new ();
    char error[256];
    int rc = sn_json_to_pack (json, strlen (json), pack, error, sizeof error);
    assert (rc == 0);
    sn_msg_t *msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
    assert (msg);
    if (size_p)
        *size_p = sn_pack_size (pack);
    sn_pack_destroy (&pack);
    return msg;
}

//  Check value_json against schema_json, a schema built for the test. expected is the
//  error, or NULL when the value is valid.
static void
s_expect (const char *schema_json, const char *value_json, const char *expected, bool verbose)
{
    json_t *schema = json_loads (schema_json, JSON_REJECT_DUPLICATES, NULL);
    assert (schema);
    char error[256];
    assert (s_lint (schema, "", error, sizeof error) == 0);
    sn_msg_t *msg = s_message (value_json, NULL);
    strcpy (error, "unset");
    int rc = s_check (schema, sn_msg_root (msg), error, sizeof error);
    if (verbose)
        zsys_info ("sn_schema: %s against %s: %s", value_json, schema_json, rc ? error : "valid");
    if (expected) {
        assert (rc == -1);
        assert (streq (error, expected));
    }
    else
        assert (rc == 0);
    sn_msg_destroy (&msg);
    json_decref (schema);
}

//  The lint's verdict on a schema built for the test, or NULL when it passes.
static void
s_expect_lint (const char *schema_json, const char *expected)
{
    json_t *schema = json_loads (schema_json, 0, NULL);
    assert (schema);
    char error[256] = "";
    int rc = s_lint (schema, "", error, sizeof error);
    if (expected) {
        assert (rc == -1);
        assert (streq (error, expected));
    }
    else
        assert (rc == 0);
    json_decref (schema);
}

//  Check a request through sn_schema_check_request; frame_size 0 means its real size.
static void
s_expect_request (sn_schema_t *self, const char *json, size_t frame_size, int code,
                  const char *expected, bool verbose)
{
    size_t size;
    sn_msg_t *msg = s_message (json, &size);
    char error[256] = "unset";
    int rc = sn_schema_check_request (self, sn_msg_root (msg), frame_size ? frame_size : size,
                                      error, sizeof error);
    if (verbose)
        zsys_info ("sn_schema: %.120s: %d %s", json, rc, rc ? error : "");
    assert (rc == code);
    if (expected)
        assert (streq (error, expected));
    sn_msg_destroy (&msg);
}

//  True when text is valid UTF-8, which is what a JSON reply needs.
static bool
s_is_utf8 (const char *text)
{
    json_t *string = json_string (text);
    json_decref (string);
    return string != NULL;
}

//  Many threads validate with one sn_schema_t at once.
static void *
s_validate_often (void *args)
{
    sn_schema_t *self = (sn_schema_t *) args;
    size_t size;
    sn_msg_t *good =
        s_message ("{\"op\":\"put\",\"rid\":1,\"event\":{\"a\":[1,{\"b\":2}]}}", &size);
    sn_msg_t *bad = s_message ("{\"op\":\"bulk\",\"rid\":1,\"puts\":[{\"event\":{}},{}]}", NULL);
    char error[128];
    for (int round = 0; round < 2000; round++) {
        assert (sn_schema_check_request (self, sn_msg_root (good), size, error, sizeof error) == 0);
        assert (sn_schema_check_request (self, sn_msg_root (bad), size, error, sizeof error) ==
                400);
        assert (streq (error, "/puts/1/event: required"));
    }
    sn_msg_destroy (&good);
    sn_msg_destroy (&bad);
    return NULL;
}

void
sn_schema_test (bool verbose)
{
    //  Keywords, one at a time, against schemas built here
    const char *typed = "{\"type\": \"string\"}";
    s_expect (typed, "\"text\"", NULL, verbose);
    s_expect (typed, "1", "/: expected string", verbose);
    const char *either = "{\"type\": [\"string\", \"null\"]}";
    s_expect (either, "null", NULL, verbose);
    s_expect (either, "\"\"", NULL, verbose);
    s_expect (either, "{}", "/: expected string or null", verbose);
    s_expect ("{\"type\": \"number\"}", "1", NULL, verbose);
    s_expect ("{\"type\": \"number\"}", "-1.5", NULL, verbose);
    s_expect ("{\"type\": \"number\"}", "\"1\"", "/: expected number", verbose);
    s_expect ("{\"type\": \"integer\"}", "-7", NULL, verbose);
    s_expect ("{\"type\": \"integer\"}", "1.0", "/: expected integer", verbose);
    s_expect ("{\"type\": \"boolean\"}", "false", NULL, verbose);
    s_expect ("{\"type\": \"boolean\"}", "0", "/: expected boolean", verbose);
    s_expect ("{\"type\": \"array\"}", "[]", NULL, verbose);
    s_expect ("{\"type\": \"array\"}", "{}", "/: expected array", verbose);
    s_expect ("{\"type\": \"object\"}", "[]", "/: expected object", verbose);
    s_expect ("{\"type\": \"null\"}", "false", "/: expected null", verbose);
    s_expect ("{}", "[{\"anything\": 1}]", NULL, verbose);

    const char *choices = "{\"enum\": [\"a\", 1, true, null, 2.5]}";
    s_expect (choices, "\"a\"", NULL, verbose);
    s_expect (choices, "1", NULL, verbose);
    s_expect (choices, "1.0", NULL, verbose);
    s_expect (choices, "2.5", NULL, verbose);
    s_expect (choices, "true", NULL, verbose);
    s_expect (choices, "null", NULL, verbose);
    s_expect (choices, "\"A\"", "/: must be one of a, 1, true, null, 2.5", verbose);
    s_expect (choices, "\"a \"", "/: must be one of a, 1, true, null, 2.5", verbose);
    s_expect (choices, "false", "/: must be one of a, 1, true, null, 2.5", verbose);
    s_expect (choices, "2", "/: must be one of a, 1, true, null, 2.5", verbose);
    s_expect (choices, "[\"a\"]", "/: must be one of a, 1, true, null, 2.5", verbose);
    s_expect ("{\"enum\": [\"\"]}", "\"\"", NULL, verbose);

    const char *range = "{\"minimum\": -5, \"maximum\": 10}";
    s_expect (range, "-5", NULL, verbose);
    s_expect (range, "10", NULL, verbose);
    s_expect (range, "9.5", NULL, verbose);
    s_expect (range, "-6", "/: less than -5", verbose);
    s_expect (range, "-5.5", "/: less than -5", verbose);
    s_expect (range, "11", "/: greater than 10", verbose);
    s_expect (range, "10.001", "/: greater than 10", verbose);
    s_expect (range, "\"11\"", NULL, verbose);
    s_expect ("{\"minimum\": 0.5}", "0", "/: less than 0.5", verbose);
    s_expect ("{\"minimum\": 0.5}", "1", NULL, verbose);
    s_expect ("{\"maximum\": 9223372036854775807}", "9223372036854775807", NULL, verbose);
    s_expect ("{\"minimum\": -9223372036854775808}", "-9223372036854775808", NULL, verbose);

    //  Lengths are in bytes: "é" is two
    const char *lengths = "{\"minLength\": 2, \"maxLength\": 3}";
    s_expect (lengths, "\"ab\"", NULL, verbose);
    s_expect (lengths, "\"é\"", NULL, verbose);
    s_expect (lengths, "\"a\"", "/: shorter than 2", verbose);
    s_expect (lengths, "\"aé\"", NULL, verbose);
    s_expect (lengths, "\"éé\"", "/: longer than 3", verbose);
    s_expect (lengths, "[1]", NULL, verbose);
    //  A bounded string holds no NUL (JSON cannot say one: msgpack can); an
    //  unbounded one may
    sn_pack_t *nul = sn_pack_new ();
    sn_pack_strn (nul, "a\0b", 3);
    sn_msg_t *nul_msg = sn_msg_decode (sn_pack_data (nul), sn_pack_size (nul), 0, NULL);
    json_t *bounded = json_loads (lengths, 0, NULL);
    json_t *unbounded = json_loads ("{\"type\": \"string\"}", 0, NULL);
    char nul_error[256];
    assert (s_check (bounded, sn_msg_root (nul_msg), nul_error, sizeof nul_error) == -1);
    assert (streq (nul_error, "/: holds a NUL byte"));
    assert (s_check (unbounded, sn_msg_root (nul_msg), nul_error, sizeof nul_error) == 0);
    json_decref (bounded);
    json_decref (unbounded);
    sn_msg_destroy (&nul_msg);
    sn_pack_destroy (&nul);

    const char *list = "{\"minItems\": 1, \"maxItems\": 2, \"items\": {\"type\": \"integer\"}}";
    s_expect (list, "[1]", NULL, verbose);
    s_expect (list, "[1, 2]", NULL, verbose);
    s_expect (list, "[]", "/: fewer than 1 item", verbose);
    s_expect (list, "[1, 2, 3]", "/: more than 2 items", verbose);
    s_expect (list, "[1, \"2\"]", "/1: expected integer", verbose);
    s_expect ("{\"items\": {\"items\": {\"maxItems\": 0}}}", "[[], [[], [], [1]]]",
              "/1/2: more than 0 items", verbose);

    const char *record = "{\"type\": \"object\", \"required\": [\"id\", \"name\"],"
                         " \"maxProperties\": 3, \"additionalProperties\": false,"
                         " \"properties\": {\"id\": {\"type\": \"integer\"},"
                         " \"name\": {\"type\": \"string\"}, \"tag\": {}, \"note\": {}}}";
    s_expect (record, "{\"id\": 1, \"name\": \"n\"}", NULL, verbose);
    s_expect (record, "{\"name\": \"n\", \"id\": 1, \"tag\": [1]}", NULL, verbose);
    s_expect (record, "{\"name\": \"n\"}", "/id: required", verbose);
    s_expect (record, "{}", "/id: required", verbose);
    s_expect (record, "{\"id\": 1}", "/name: required", verbose);
    s_expect (record, "{\"id\": \"1\", \"name\": \"n\"}", "/id: expected integer", verbose);
    s_expect (record, "{\"id\": 1, \"name\": \"n\", \"extra\": 0}", "/extra: unknown field",
              verbose);
    s_expect (record, "{\"id\": 1, \"name\": \"n\", \"tag\": 0, \"note\": 0}",
              "/: more than 3 fields", verbose);
    s_expect ("{\"maxProperties\": 1}", "{\"a\": 1, \"b\": 2}", "/: more than 1 field", verbose);
    //  additionalProperties: allowed by default, or held to a schema
    s_expect ("{\"properties\": {\"a\": {\"type\": \"string\"}}}", "{\"a\": \"x\", \"b\": 1}", NULL,
              verbose);
    s_expect ("{\"additionalProperties\": true}", "{\"b\": 1}", NULL, verbose);
    const char *counters = "{\"properties\": {\"name\": {\"type\": \"string\"}},"
                           " \"additionalProperties\": {\"type\": \"integer\"}}";
    s_expect (counters, "{\"name\": \"x\", \"a\": 1, \"b\": 2}", NULL, verbose);
    s_expect (counters, "{\"name\": \"x\", \"a\": 1, \"b\": \"2\"}", "/b: expected integer",
              verbose);
    s_expect (counters, "{\"name\": 1}", "/name: expected string", verbose);
    //  Keywords of other types do not apply
    s_expect ("{\"required\": [\"a\"], \"minimum\": 3, \"maxItems\": 0}", "\"text\"", NULL,
              verbose);

    //  maxDepth counts containers, the value's own included
    s_expect ("{\"maxDepth\": 1}", "{}", NULL, verbose);
    s_expect ("{\"maxDepth\": 1}", "{\"a\": 1, \"b\": \"x\"}", NULL, verbose);
    s_expect ("{\"maxDepth\": 1}", "{\"a\": {}}", "/: nested deeper than 1 level", verbose);
    s_expect ("{\"maxDepth\": 2}", "{\"a\": {}}", NULL, verbose);
    s_expect ("{\"maxDepth\": 2}", "[1, [2], {\"a\": []}]", "/: nested deeper than 2 levels",
              verbose);
    s_expect ("{\"maxDepth\": 0}", "7", NULL, verbose);
    s_expect ("{\"maxDepth\": 0}", "[]", "/: nested deeper than 0 levels", verbose);
    s_expect ("{\"properties\": {\"e\": {\"maxDepth\": 3}}}", "{\"e\": [[[[]]]]}",
              "/e: nested deeper than 3 levels", verbose);
    s_expect ("{\"maxDepth\": 24}", "[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]", NULL,
              verbose);
    s_expect ("{\"maxDepth\": 23}", "[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]",
              "/: nested deeper than 23 levels", verbose);

    //  Annotations are ignored, and so is maxBytes below the top of an op
    s_expect ("{\"title\": \"t\", \"description\": \"d\", \"$comment\": \"c\", \"examples\": [1],"
              " \"maxBytes\": 1}",
              "[1, 2, 3]", NULL, verbose);

    //  Pointers are escaped per RFC 6901, and clients' keys are clipped and cleaned
    const char *closed = "{\"additionalProperties\": false}";
    s_expect (closed, "{\"a/b~c\": 1}", "/a~1b~0c: unknown field", verbose);
    s_expect (closed, "{\"\": 1}", "/: unknown field", verbose);
    s_expect (closed, "{\"tab\\there\\u007f\": 1}", "/tab?here?: unknown field", verbose);
    s_expect (closed, "{\"01234567890123456789012345678901\": 1}",
              "/01234567890123456789012345678901: unknown field", verbose);
    s_expect (closed, "{\"0123456789012345678901234567890123\": 1}",
              "/01234567890123456789012345678901...: unknown field", verbose);
    //  A clip lands between characters: 31 bytes, then a two-byte one
    s_expect (closed, "{\"0123456789012345678901234567890éé\": 1}",
              "/0123456789012345678901234567890...: unknown field", verbose);
    s_expect (closed, "{\"~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\": 1}",
              "/~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0~0...: unknown "
              "field",
              verbose);

    //  A deep pointer made of long keys still fits, and errors fit any buffer
    char deep[4096] = "";
    for (int level = 0; level < SN_MSG_MAX_DEPTH - 1; level++)
        strcat (deep, "{\"/~ééééééééééééééééééééééééééééééééééééééééé\":");
    strcat (deep, "{\"x\": 1}");
    for (int level = 0; level < SN_MSG_MAX_DEPTH - 1; level++)
        strcat (deep, "}");
    json_t *schema = json_pack ("{s:b}", "additionalProperties", false);
    for (int level = 0; level < SN_MSG_MAX_DEPTH - 1; level++)
        schema = json_pack ("{s:o}", "additionalProperties", schema);
    sn_msg_t *msg = s_message (deep, NULL);
    char error[S_POINTER_MAX + 64];
    assert (s_check (schema, sn_msg_root (msg), error, sizeof error) == -1);
    if (verbose)
        zsys_info ("sn_schema: deep error of %zu bytes", strlen (error));
    //  Each level: "/", "~1~0" for "/~", 15 two-byte characters to the clip, "..."
    assert (strlen (error) == (SN_MSG_MAX_DEPTH - 1) * 38 + strlen ("/x: unknown field"));
    assert (streq (error + strlen (error) - strlen ("/x: unknown field"), "/x: unknown field"));
    assert (strncmp (error, "/~1~0ééé...", strlen ("/~1~0ééé")) == 0);
    assert (s_is_utf8 (error));
    for (size_t size = 1; size < 80; size++) {
        memset (error, 'z', sizeof error);
        assert (s_check (schema, sn_msg_root (msg), error, size) == -1);
        assert (strlen (error) < size);
        assert (s_is_utf8 (error));
    }
    assert (s_check (schema, sn_msg_root (msg), NULL, 0) == -1);
    sn_msg_destroy (&msg);
    json_decref (schema);

    //  Schemas with a keyword we do not implement, or a keyword of the wrong shape, are
    //  refused at load rather than half enforced
    s_expect_lint ("{\"type\": \"object\", \"title\": \"x\", \"x-anything\": 1}", NULL);
    s_expect_lint ("[]", "/: a schema must be an object");
    s_expect_lint ("{\"pattern\": \"^a\"}", "/pattern: is not supported by this validator");
    s_expect_lint ("{\"properties\": {\"a\": {\"oneOf\": []}}}",
                   "/properties/a/oneOf: is not supported by this validator");
    s_expect_lint ("{\"items\": {\"type\": \"strnig\"}}", "/items/type: unknown type");
    s_expect_lint ("{\"type\": [\"string\", 1]}", "/type: unknown type");
    s_expect_lint ("{\"type\": []}", "/type: must be a type or a list of types");
    s_expect_lint ("{\"items\": [{}]}", "/items: must be an object");
    s_expect_lint ("{\"required\": [\"a\", 1]}", "/required: must be a list of field names");
    s_expect_lint ("{\"additionalProperties\": 0}",
                   "/additionalProperties: must be a boolean or a schema");
    s_expect_lint ("{\"additionalProperties\": {\"maxLength\": \"9\"}}",
                   "/additionalProperties/maxLength: must be a non-negative integer");
    s_expect_lint ("{\"maxItems\": -1}", "/maxItems: must be a non-negative integer");
    s_expect_lint ("{\"maxBytes\": 1.5}", "/maxBytes: must be a non-negative integer");
    s_expect_lint ("{\"minimum\": \"0\"}", "/minimum: must be a number");
    s_expect_lint ("{\"enum\": []}", "/enum: must be a list of values");
    s_expect_lint ("{\"enum\": [[1]]}", "/enum: holds strings, numbers, booleans and null only");
    s_expect_lint ("{\"properties\": {\"a\": true}}", "/properties/a: a schema must be an object");

    //  The embedded schemas all load
    sn_schema_t *self = sn_schema_new ();
    assert (self);
    for (const sn_schema_source_t *source = sn_schema_sources; source->name; source++)
        assert (sn_schema_has (self, source->name));
    assert (sn_schema_has (self, "op.put"));
    assert (sn_schema_has (self, "event.event"));
    assert (!sn_schema_has (self, "op.nope"));
    assert (!sn_schema_has (self, NULL));

    //  Requests against the real op schemas
    s_expect_request (self, "{\"op\":\"health\",\"rid\":0}", 0, 0, NULL, verbose);
    s_expect_request (self, "{\"op\":\"put\",\"rid\":1,\"event\":{\"a\":1}}", 0, 0, NULL, verbose);
    s_expect_request (self,
                      "{\"op\":\"put\",\"rid\":9223372036854775807,\"event\":{},"
                      "\"key\":\"0123456789012345678901234567\",\"commit\":\"QUORUM\"}",
                      0, 0, NULL, verbose);
    s_expect_request (self, "{\"op\":\"put\",\"event\":{}}", 0, 400, "/rid: required", verbose);
    s_expect_request (self, "{\"op\":\"put\",\"rid\":1}", 0, 400, "/event: required", verbose);
    s_expect_request (self, "{\"op\":\"put\",\"rid\":-1,\"event\":{}}", 0, 400, "/rid: less than 0",
                      verbose);
    s_expect_request (self, "{\"op\":\"put\",\"rid\":1.0,\"event\":{}}", 0, 400,
                      "/rid: expected integer", verbose);
    s_expect_request (self, "{\"op\":\"put\",\"rid\":1,\"event\":[]}", 0, 400,
                      "/event: expected object", verbose);
    s_expect_request (self, "{\"op\":\"put\",\"rid\":1,\"event\":{},\"foo\":1}", 0, 400,
                      "/foo: unknown field", verbose);
    s_expect_request (self, "{\"op\":\"put\",\"rid\":1,\"event\":{},\"key\":\"short\"}", 0, 400,
                      "/key: shorter than 27", verbose);
    s_expect_request (self, "{\"op\":\"put\",\"rid\":1,\"event\":{},\"commit\":\"MOST\"}", 0, 400,
                      "/commit: must be one of ONE, QUORUM, ALL", verbose);
    s_expect_request (self, "{\"op\":\"get\",\"rid\":1,\"key\":\"\"}", 0, 400,
                      "/key: shorter than 1", verbose);
    s_expect_request (self, "{\"op\":\"range\",\"rid\":1,\"limit\":0}", 0, 400,
                      "/limit: less than 1", verbose);
    s_expect_request (self, "{\"op\":\"range\",\"rid\":1,\"limit\":1001}", 0, 400,
                      "/limit: greater than 1000", verbose);
    s_expect_request (self, "{\"op\":\"range\",\"rid\":1,\"from\":\"a\",\"to\":\"b\"}", 0, 0, NULL,
                      verbose);
    s_expect_request (self, "{\"op\":\"digest\",\"rid\":1,\"p\":65535}", 0, 0, NULL, verbose);
    s_expect_request (self, "{\"op\":\"digest\",\"rid\":1,\"p\":65536}", 0, 400,
                      "/p: greater than 65535", verbose);

    //  The op itself is checked first, and quoted with care
    s_expect_request (self, "[1]", 0, 400, "/: expected object", verbose);
    s_expect_request (self, "\"put\"", 0, 400, "/: expected object", verbose);
    s_expect_request (self, "{\"rid\":1}", 0, 400, "/op: required", verbose);
    s_expect_request (self, "{\"op\":5,\"rid\":1}", 0, 400, "/op: expected string", verbose);
    s_expect_request (self, "{\"op\":\"nope\"}", 0, 400, "/op: unknown op 'nope'", verbose);
    s_expect_request (self, "{\"op\":\"\"}", 0, 400, "/op: unknown op ''", verbose);
    s_expect_request (self, "{\"op\":\"PUT\"}", 0, 400, "/op: unknown op 'PUT'", verbose);
    s_expect_request (self, "{\"op\":\"p\\u00fat\\n\"}", 0, 400, "/op: unknown op 'p??t?'",
                      verbose);
    s_expect_request (self, "{\"op\":\"0123456789012345678901234567890123456789\"}", 0, 400,
                      "/op: unknown op '01234567890123456789012345678901...'", verbose);
    char long_op[400] = "{\"op\":\"";
    memset (long_op + 7, 'x', 300);
    strcpy (long_op + 307, "\"}");
    s_expect_request (self, long_op, 0, 400,
                      "/op: unknown op 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'", verbose);
    //  The name must match exactly: a NUL inside does not cut it short
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 1);
    sn_pack_str (pack, "op");
    sn_pack_strn (pack, "health\0x", 8);
    msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
    assert (msg);
    assert (sn_schema_check_request (self, sn_msg_root (msg), 16, error, sizeof error) == 400);
    assert (streq (error, "/op: unknown op 'health?x'"));
    sn_msg_destroy (&msg);
    //  Integers beyond JSON's reach are still integers
    sn_pack_reset (pack);
    sn_pack_map (pack, 2);
    sn_pack_kv_str (pack, "op", "health");
    sn_pack_kv_uint (pack, "rid", UINT64_MAX);
    msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
    assert (msg);
    assert (sn_schema_check_request (self, sn_msg_root (msg), 20, error, sizeof error) == 0);
    sn_msg_destroy (&msg);
    //  Not every schema is an op
    s_expect_request (self, "{\"op\":\"event\"}", 0, 400, "/op: unknown op 'event'", verbose);

    //  maxBytes is checked before the rest of the schema
    s_expect_request (self, "{\"op\":\"health\",\"rid\":1}", 4096, 0, NULL, verbose);
    s_expect_request (self, "{\"op\":\"health\",\"rid\":1}", 4097, 413,
                      "request of 4097 bytes is larger than 4096", verbose);
    s_expect_request (self, "{\"op\":\"health\"}", 5000, 413,
                      "request of 5000 bytes is larger than 4096", verbose);
    s_expect_request (self, "{\"op\":\"put\",\"rid\":1,\"event\":{}}", 1048577, 413,
                      "request of 1048577 bytes is larger than 1048576", verbose);

    //  Bulk: errors point into the list
    char bulk[1024];
    strcpy (bulk, "{\"op\":\"bulk\",\"rid\":7,\"commit\":\"ALL\",\"puts\":[");
    for (int index = 0; index < 3; index++)
        strcat (bulk, "{\"event\":{\"n\":1},\"key\":\"0123456789012345678901234567\"},");
    strcat (bulk, "{\"event\":{},\"key\":\"");
    size_t end = strlen (bulk);
    memset (bulk + end, 'k', 93);
    strcpy (bulk + end + 93, "\"}]}");
    s_expect_request (self, bulk, 0, 400, "/puts/3/key: longer than 92", verbose);
    strcpy (bulk + end + 92, "\"}]}");
    s_expect_request (self, bulk, 0, 0, NULL, verbose);
    s_expect_request (self, "{\"op\":\"bulk\",\"rid\":7,\"puts\":[]}", 0, 400,
                      "/puts: fewer than 1 item", verbose);
    s_expect_request (self, "{\"op\":\"bulk\",\"rid\":7,\"puts\":[{\"key\":\"k\"}]}", 0, 400,
                      "/puts/0/event: required", verbose);
    s_expect_request (self, "{\"op\":\"bulk\",\"rid\":7,\"puts\":[{\"event\":{}, \"x\":1}]}", 0,
                      400, "/puts/0/x: unknown field", verbose);
    for (int count = 1000; count <= 1001; count++) {
        char *many = (char *) zmalloc (20000);
        strcpy (many, "{\"op\":\"bulk\",\"rid\":7,\"puts\":[");
        for (int index = 0; index < count; index++)
            strcat (many, index ? ",{\"event\":{}}" : "{\"event\":{}}");
        strcat (many, "]}");
        s_expect_request (self, many, 0, count == 1000 ? 0 : 400,
                          count == 1000 ? NULL : "/puts: more than 1000 items", verbose);
        free (many);
    }

    //  Events: any object, within the depth and field limits
    msg = s_message ("{\"any\":[1,\"two\",{\"three\":null}],\"ok\":true}", NULL);
    assert (sn_schema_check (self, "event.event", sn_msg_root (msg), error, sizeof error) == 0);
    sn_msg_destroy (&msg);
    msg = s_message ("[]", NULL);
    assert (sn_schema_check (self, "event.event", sn_msg_root (msg), error, sizeof error) == -1);
    assert (streq (error, "/: expected object"));
    assert (sn_schema_check (self, "event.nope", sn_msg_root (msg), error, sizeof error) == -1);
    assert (streq (error, "no schema called 'event.nope'"));
    sn_msg_destroy (&msg);
    assert (sn_schema_check (self, "event.event", NULL, error, sizeof error) == -1);
    assert (streq (error, "/: expected object"));

    for (size_t depth = 20; depth <= 21; depth++) {
        char event[512] = "{\"op\":\"put\",\"rid\":1,\"event\":";
        for (size_t level = 1; level < depth; level++)
            strcat (event, "{\"d\":");
        strcat (event, "{}");
        for (size_t level = 1; level < depth; level++)
            strcat (event, "}");
        strcat (event, "}");
        s_expect_request (self, event, 0, depth == 20 ? 0 : 400,
                          depth == 20 ? NULL : "/event: nested deeper than 20 levels", verbose);
    }
    for (uint32_t fields = 10000; fields <= 10001; fields++) {
        sn_pack_reset (pack);
        sn_pack_map (pack, 3);
        sn_pack_kv_str (pack, "op", "put");
        sn_pack_kv_uint (pack, "rid", 1);
        sn_pack_str (pack, "event");
        sn_pack_map (pack, fields);
        for (uint32_t field = 0; field < fields; field++) {
            char key[16];
            snprintf (key, sizeof key, "f%u", field);
            sn_pack_kv_uint (pack, key, field);
        }
        msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
        assert (msg);
        int code = sn_schema_check_request (self, sn_msg_root (msg), sn_pack_size (pack), error,
                                            sizeof error);
        assert (code == (fields == 10000 ? 0 : 400));
        if (code)
            assert (streq (error, "/event: more than 10000 fields"));
        sn_msg_destroy (&msg);
    }

    //  A key given twice never reaches the validator: the decoder refuses it
    sn_pack_reset (pack);
    sn_pack_map (pack, 4);
    sn_pack_kv_str (pack, "op", "health");
    sn_pack_kv_uint (pack, "rid", 1);
    sn_pack_kv_str (pack, "op", "put");
    sn_pack_kv_uint (pack, "rid", 2);
    assert (sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL) == NULL);
    sn_pack_destroy (&pack);

    //  An error always fits the buffer given
    msg = s_message ("{\"op\":\"put\",\"rid\":1,\"event\":{},\"commit\":\"MOST\"}", NULL);
    char tiny[8];
    assert (sn_schema_check_request (self, sn_msg_root (msg), 10, tiny, sizeof tiny) == 400);
    assert (streq (tiny, "/commit"));
    assert (sn_schema_check_request (self, sn_msg_root (msg), 10, NULL, 0) == 400);
    assert (sn_schema_check_request (self, sn_msg_root (msg), 5000000, tiny, 1) == 413);
    assert (streq (tiny, ""));
    sn_msg_destroy (&msg);

    //  Validation is read-only: many threads may share one sn_schema_t
    pthread_t threads[4];
    for (size_t index = 0; index < 4; index++)
        assert (pthread_create (&threads[index], NULL, s_validate_often, self) == 0);
    for (size_t index = 0; index < 4; index++)
        pthread_join (threads[index], NULL);

    sn_schema_destroy (&self);
    sn_schema_destroy (&self);
    if (verbose)
        zsys_info ("sn_schema: all checks passed");
}
