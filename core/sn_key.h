/*  sn_key: event keys, names, hashes and partitions.

    A key is AllData's 27-character UTC time key, YYYYMMDDThhmmss + milliseconds +
    a 9-digit sequence, then "-" and the name of the node that made it:
    "20261122T121314123000000042-n1". Keys sort by time and are unique because a
    generator never repeats or goes back, even when the clock does.
*/
#ifndef SN_KEY_H_INCLUDED
#define SN_KEY_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SN_KEY_TIME_LEN 27                                  //  the AllData part
#define SN_NAME_MAX     64                                  //  longest node name
#define SN_KEY_MAX      (SN_KEY_TIME_LEN + 1 + SN_NAME_MAX) //  longest key we accept
#define SN_KEY_MS_MAX   253402300799999LL //  9999-12-31T23:59:59.999, the last a key holds

typedef struct _sn_keygen_t sn_keygen_t;

//  A generator for keys ending in "-name".
sn_keygen_t *sn_keygen_new (const char *name);
void sn_keygen_destroy (sn_keygen_t **self_p);

//  Write the next key, NUL-terminated, into key (at least SN_KEY_MAX + 1 bytes).
//  now_ms is the current UTC time in ms; keys stay strictly increasing if it is not.
void sn_keygen_next (sn_keygen_t *self, int64_t now_ms, char *key);

//  Never make a key at or before this (ms, sequence): used to resume after a restart.
void sn_keygen_resume (sn_keygen_t *self, int64_t last_ms, uint32_t last_seq);

//  The time and sequence of the last key made.
int64_t sn_keygen_last_ms (sn_keygen_t *self);
uint32_t sn_keygen_last_seq (sn_keygen_t *self);

//  Write the 27-character time part of the first key at ms, NUL-terminated, into
//  out (at least SN_KEY_TIME_LEN + 1 bytes): a bound for ranges of keys by time.
void sn_key_time_prefix (int64_t ms, char *out);

//  Parse a key of len bytes: a 27-character time key, optionally followed by "-" and a
//  valid node name. Returns its time in UTC ms, or -1 when it is not a key.
int64_t sn_key_time (const char *key, size_t len);

//  True for a usable node name: 1 to SN_NAME_MAX of [A-Za-z0-9_.-], not starting with '-'.
bool sn_name_valid (const char *name);

//  A 64-bit hash of bytes, the same on every node and every build.
uint64_t sn_hash (const void *data, size_t size);

//  The partition of a partition key: sn_hash (key) mod partitions.
uint32_t sn_partition (const void *pkey, size_t size, uint32_t partitions);

//  The retention horizon of a running process: user events whose key time is before
//  it have expired. It follows the wall clock less the retention, but never goes back
//  and never moves faster than the monotonic clock (plus SN_HORIZON_SLACK_MS), so that
//  a wall clock stepped forward cannot expire data early while the process runs. A
//  plain value the caller embeds and zeroes; every field is the helper's.
typedef struct {
    bool started;      //  set by the first sn_horizon_advance
    int64_t horizon;   //  ms, the horizon now
    int64_t anchor;    //  ms, a horizon the wall clock agreed with
    int64_t anchor_at; //  the monotonic ms of anchor
    int64_t ahead;     //  ms the wall clock ran ahead of the clamp at the last advance
    int64_t warned_at; //  the monotonic ms of the last warning; 0: never
} sn_horizon_t;

//  How much faster than the monotonic clock the wall clock may advance the horizon
//  between two agreements: it absorbs the drift between both clocks.
#define SN_HORIZON_SLACK_MS 1000

//  Advance the horizon to wall - retention (ms) at monotonic time mono (ms), within
//  the rules above, and return it. The first call takes wall - retention as it is.
int64_t sn_horizon_advance (sn_horizon_t *self, int64_t wall, int64_t mono, int64_t retention);

//  True at most once a minute while the wall clock runs ahead of the horizon's clamp
//  by more than a minute: the caller logs a warning.
bool sn_horizon_warn (sn_horizon_t *self, int64_t mono);

//  The horizon now by this process's clocks (sn_horizon_advance), or 0 without a
//  retention; warns, as owner (the class name), while the wall clock runs ahead.
int64_t sn_horizon_now (sn_horizon_t *self, int64_t retention, const char *owner);

void sn_key_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
