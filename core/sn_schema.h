/*  sn_schema: the JSON Schemas of every op and stored event type, and their validator.

    The schemas in schemas/ are the single source of truth for every API. They are
    embedded in the binary at build time and parsed once; afterwards an sn_schema_t is
    read-only, so any thread may validate with it.

    The validator implements a documented subset of JSON Schema: type (one or a list
    of: object, array, string, integer, number, boolean, null), required, properties,
    additionalProperties (boolean or schema), items, enum, minimum, maximum, minLength,
    maxLength, minItems, maxItems, maxProperties, and two keywords of our own: maxDepth
    (deepest nesting of containers below the value) and, at the top of an op's schema
    only, maxBytes (the largest encoded request). Errors name the field as a JSON
    pointer: "/invocation/class: expected string".
*/
#ifndef SN_SCHEMA_H_INCLUDED
#define SN_SCHEMA_H_INCLUDED

#include "sn_msg.h"

#ifdef __cplusplus
extern "C" {
#endif

//  One embedded schema: name is the file name without .json ("op.put").
typedef struct {
    const char *name;
    const char *text;
} sn_schema_source_t;

//  The generated table, ended by { NULL, NULL }.
extern const sn_schema_source_t sn_schema_sources[];

typedef struct _sn_schema_t sn_schema_t;

//  Parse every embedded schema. A schema that does not parse is a build defect: this
//  logs it and returns NULL.
sn_schema_t *sn_schema_new (void);
void sn_schema_destroy (sn_schema_t **self_p);

//  True when a schema of that name exists.
bool sn_schema_has (sn_schema_t *self, const char *name);

//  Check value against the schema called name. Returns 0 when valid, else -1 with
//  "<pointer>: <what>" in error.
int sn_schema_check (sn_schema_t *self, const char *name, const sn_value_t *value, char *error,
                     size_t size);

//  Check a request of frame_size encoded bytes: it must be a map with a string "op"
//  naming a known op, no larger than that op's maxBytes, and valid against the schema
//  "op.<op>". Returns 0 when valid, else the status to answer with (400, or 413 when
//  too large) and the reason in error.
int sn_schema_check_request (sn_schema_t *self, const sn_value_t *request, size_t frame_size,
                             char *error, size_t size);

void sn_schema_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
