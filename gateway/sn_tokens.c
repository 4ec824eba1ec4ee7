/*  sn_tokens: the bearer tokens HTTP clients must present when the node asks for them.

    Tokens are kept in fixed slots padded with zeros, and a presented token is
    compared with every slot over the whole slot: the time a check takes says
    nothing about which token, or how much of one, a guess got right.
*/
#include "sn_tokens.h"
#include <ctype.h>

//  Most tokens one file may hold
#define S_TOKENS_MAX 1024

//  Longest line read; longer ones are refused, not split
#define S_LINE_MAX 1024

typedef struct {
    char text[SN_TOKEN_MAX]; //  the token, zero-padded
    size_t size;             //  its length
} s_token_t;

struct _sn_tokens_t {
    s_token_t *tokens; //  the tokens read
    size_t count;      //  how many
};

//  Checks one trimmed line of the file; returns NULL or why it is not a token.
static const char *
s_invalid (const char *token, size_t size)
{
    if (size < SN_TOKEN_MIN)
        return "token shorter than 16 characters";
    if (size > SN_TOKEN_MAX)
        return "token longer than 256 characters";
    for (size_t index = 0; index < size; index++)
        if (token[index] <= ' ' || token[index] > '~')
            return "token holds a character that is not printable ASCII or is a space";
    return NULL;
}

sn_tokens_t *
sn_tokens_load (const char *path, char *error, size_t size)
{
    assert (path);
    FILE *file = fopen (path, "r");
    if (!file) {
        snprintf (error, size, "tokens file %s: %s", path, strerror (errno));
        return NULL;
    }
    sn_tokens_t *self = (sn_tokens_t *) zmalloc (sizeof (sn_tokens_t));
    self->tokens = (s_token_t *) zmalloc (S_TOKENS_MAX * sizeof (s_token_t));
    char *line = NULL;
    size_t capacity = 0;
    ssize_t read;
    const char *problem = NULL;
    size_t number = 0;
    while (!problem && (read = getline (&line, &capacity, file)) != -1) {
        number++;
        if (read > S_LINE_MAX) {
            problem = "line longer than 1024 bytes";
            break;
        }
        if (strlen (line) != (size_t) read) {
            problem = "line holds a NUL byte";
            break;
        }
        char *start = line;
        while (*start == ' ' || *start == '\t')
            start++;
        char *end = start + strlen (start);
        while (end > start && isspace ((unsigned char) end[-1]))
            end--;
        if (end == start || *start == '#')
            continue;
        problem = s_invalid (start, (size_t) (end - start));
        if (!problem && self->count == S_TOKENS_MAX)
            problem = "more than 1024 tokens";
        if (!problem) {
            s_token_t *token = &self->tokens[self->count++];
            token->size = (size_t) (end - start);
            memcpy (token->text, start, token->size);
        }
    }
    if (line)
        explicit_bzero (line, capacity);
    free (line);
    bool unreadable = ferror (file) != 0;
    fclose (file);
    if (!problem && unreadable)
        snprintf (error, size, "tokens file %s: cannot be read", path);
    else if (problem)
        snprintf (error, size, "tokens file %s, line %zu: %s", path, number, problem);
    else if (self->count == 0)
        snprintf (error, size, "tokens file %s holds no token", path);
    if (problem || unreadable || self->count == 0) {
        sn_tokens_destroy (&self);
        return NULL;
    }
    return self;
}

void
sn_tokens_destroy (sn_tokens_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        sn_tokens_t *self = *self_p;
        //  They are secrets: do not leave them in freed memory
        explicit_bzero (self->tokens, S_TOKENS_MAX * sizeof (s_token_t));
        free (self->tokens);
        free (self);
        *self_p = NULL;
    }
}

bool
sn_tokens_allow (sn_tokens_t *self, const char *token, size_t size)
{
    assert (self);
    if (!token || size == 0 || size > SN_TOKEN_MAX)
        return false;
    char padded[SN_TOKEN_MAX] = {0};
    memcpy (padded, token, size);
    unsigned found = 0;
    for (size_t index = 0; index < self->count; index++) {
        const s_token_t *candidate = &self->tokens[index];
        unsigned differ = candidate->size != size;
        for (size_t at = 0; at < SN_TOKEN_MAX; at++)
            differ |= (unsigned) (candidate->text[at] ^ padded[at]);
        found |= differ == 0;
    }
    explicit_bzero (padded, sizeof padded);
    return found != 0;
}

bool
sn_tokens_allow_header (sn_tokens_t *self, const char *header)
{
    assert (self);
    //  The scheme is case-insensitive (RFC 9110); the token is not
    const char scheme[] = "Bearer ";
    size_t scheme_size = sizeof scheme - 1;
    if (!header || strnlen (header, scheme_size) < scheme_size ||
        strncasecmp (header, scheme, scheme_size) != 0)
        return false;
    const char *token = header + scheme_size;
    while (*token == ' ')
        token++;
    size_t size = strlen (token);
    while (size > 0 && token[size - 1] == ' ')
        size--;
    return sn_tokens_allow (self, token, size);
}

size_t
sn_tokens_size (sn_tokens_t *self)
{
    assert (self);
    return self->count;
}

//  Writes text to a new temporary file; returns its path, the caller's to free.
static char *
s_file_with (const char *text)
{
    char *path = strdup ("/tmp/sn_tokens_test_XXXXXX");
    int fd = mkstemp (path);
    assert (fd >= 0);
    assert (write (fd, text, strlen (text)) == (ssize_t) strlen (text));
    close (fd);
    return path;
}

//  Loads a file holding text, which must fail with an error holding expected.
static void
s_expect_error (const char *text, const char *expected)
{
    char *path = s_file_with (text);
    char error[256] = "";
    sn_tokens_t *tokens = sn_tokens_load (path, error, sizeof error);
    assert (tokens == NULL);
    assert (strstr (error, expected));
    unlink (path);
    free (path);
}

void
sn_tokens_test (bool verbose)
{
    char error[256];
    char *path = s_file_with ("# operators\n\n  0123456789abcdef  \nsecond-token-for-ci\r\n");
    sn_tokens_t *tokens = sn_tokens_load (path, error, sizeof error);
    assert (tokens);
    assert (sn_tokens_size (tokens) == 2);
    assert (sn_tokens_allow (tokens, "0123456789abcdef", 16));
    assert (sn_tokens_allow (tokens, "second-token-for-ci", 19));
    assert (!sn_tokens_allow (tokens, "0123456789abcde", 15));
    assert (!sn_tokens_allow (tokens, "0123456789abcdefg", 17));
    assert (!sn_tokens_allow (tokens, "0123456789abcdeF", 16));
    assert (!sn_tokens_allow (tokens, NULL, 0));
    assert (!sn_tokens_allow (tokens, "", 0));
    char huge[SN_TOKEN_MAX + 10];
    memset (huge, 'a', sizeof huge);
    assert (!sn_tokens_allow (tokens, huge, sizeof huge));

    assert (sn_tokens_allow_header (tokens, "Bearer 0123456789abcdef"));
    assert (sn_tokens_allow_header (tokens, "bearer  0123456789abcdef "));
    assert (!sn_tokens_allow_header (tokens, "Basic 0123456789abcdef"));
    assert (!sn_tokens_allow_header (tokens, "Bearer"));
    assert (!sn_tokens_allow_header (tokens, "Bearer "));
    assert (!sn_tokens_allow_header (tokens, "0123456789abcdef"));
    assert (!sn_tokens_allow_header (tokens, NULL));
    sn_tokens_destroy (&tokens);
    sn_tokens_destroy (&tokens);
    unlink (path);
    free (path);

    //  Every mistake names the file and the line
    assert (sn_tokens_load ("/nonexistent/tokens", error, sizeof error) == NULL);
    assert (strstr (error, "/nonexistent/tokens") && strstr (error, "No such file"));
    s_expect_error ("", "holds no token");
    s_expect_error ("# only a comment\n\n", "holds no token");
    s_expect_error ("0123456789abcdef\nshort\n", "line 2: token shorter than 16");
    s_expect_error ("0123456789 abcdef\n", "line 1: token holds a character");
    s_expect_error ("0123456789abcdef\x01\n", "line 1: token holds a character");
    char with_nul[] = "0123456789abcdef\n0123456789abcdef\0xyz\n";
    char *nul_path = s_file_with ("");
    FILE *nul_file = fopen (nul_path, "w");
    assert (nul_file && fwrite (with_nul, 1, sizeof with_nul - 1, nul_file) == sizeof with_nul - 1);
    fclose (nul_file);
    assert (sn_tokens_load (nul_path, error, sizeof error) == NULL);
    assert (strstr (error, "line 2: line holds a NUL byte"));
    unlink (nul_path);
    free (nul_path);
    char *long_line = (char *) malloc (3000);
    memset (long_line, 'x', 2999);
    long_line[2999] = 0;
    s_expect_error (long_line, "line 1: line longer than 1024 bytes");
    memset (long_line, 'x', 300);
    long_line[300] = 0;
    s_expect_error (long_line, "line 1: token longer than 256");
    free (long_line);
    if (verbose)
        zsys_info ("sn_tokens: selftest passed");
}
