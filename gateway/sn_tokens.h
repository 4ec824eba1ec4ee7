/*  sn_tokens: the bearer tokens HTTP clients must present when the node asks for them.

    A tokens file holds one token per line; blank lines and lines starting with '#'
    are skipped, and spaces around a token are trimmed. A token is 16 to 256
    printable ASCII characters without spaces: short ones are refused so that no
    node runs with a guessable secret. The file is read once, at start.
*/
#ifndef SN_TOKENS_H_INCLUDED
#define SN_TOKENS_H_INCLUDED

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SN_TOKEN_MIN 16
#define SN_TOKEN_MAX 256

typedef struct _sn_tokens_t sn_tokens_t;

//  Read the tokens of the file at path. Returns NULL with the reason in error (the
//  file and line at fault) when it cannot be read, holds no token, or holds one
//  that is not valid.
sn_tokens_t *sn_tokens_load (const char *path, char *error, size_t size);
void sn_tokens_destroy (sn_tokens_t **self_p);

//  True when the value of an Authorization header is "Bearer " and one of the
//  tokens. The comparison takes the same time whichever token, or how much of one,
//  matches.
bool sn_tokens_allow_header (sn_tokens_t *self, const char *header);

//  True when token is one of the tokens; token may be NULL.
bool sn_tokens_allow (sn_tokens_t *self, const char *token, size_t size);

//  How many tokens were read.
size_t sn_tokens_size (sn_tokens_t *self);

void sn_tokens_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
