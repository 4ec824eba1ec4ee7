/*  sn_key: event keys, names, hashes and partitions.
 */
#include "sn_key.h"
#include <time.h>

#define SN_KEY_SEQ_MAX 999999999u //  the 9-digit sequence

struct _sn_keygen_t {
    char name[SN_NAME_MAX + 1]; //  node name, the suffix of every key
    int64_t last_ms;            //  time of the last key made
    uint32_t last_seq;          //  its sequence within that millisecond
    bool started;               //  false until the first key or resume
    int64_t prefix_second;      //  the second prefix was made for, -1 for none
    char prefix[16];            //  YYYYMMDDThhmmss of that second
};

//  Write value as exactly width decimal digits.
static void
s_put_digits (char *out, uint32_t value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char) ('0' + value % 10);
        value /= 10;
    }
}

sn_keygen_t *
sn_keygen_new (const char *name)
{
    assert (sn_name_valid (name));
    sn_keygen_t *self = (sn_keygen_t *) zmalloc (sizeof (sn_keygen_t));
    snprintf (self->name, sizeof self->name, "%s", name);
    self->prefix_second = -1;
    return self;
}

void
sn_keygen_destroy (sn_keygen_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

void
sn_keygen_next (sn_keygen_t *self, int64_t now_ms, char *key)
{
    assert (self);
    //  Time only moves forward: a clock that steps back keeps the last millisecond
    //  and counts on in the sequence, so keys stay unique and ordered.
    //  A key holds years up to 9999: the clock, or a resume point, past that stays
    //  at the last millisecond a key can hold
    if (now_ms > SN_KEY_MS_MAX)
        now_ms = SN_KEY_MS_MAX;
    if (!self->started || now_ms > self->last_ms) {
        self->last_ms = now_ms;
        self->last_seq = 0;
        self->started = true;
    }
    else if (self->last_seq < SN_KEY_SEQ_MAX)
        self->last_seq++;
    else if (self->last_ms < SN_KEY_MS_MAX) {
        self->last_ms++;
        self->last_seq = 0;
    }
    //  Keys are made by the thousand each second: the calendar part is worked out
    //  once a second, the rest written digit by digit.
    int64_t second = self->last_ms / 1000;
    if (second != self->prefix_second) {
        time_t seconds = (time_t) second;
        struct tm utc;
        gmtime_r (&seconds, &utc);
        size_t len = strftime (self->prefix, sizeof self->prefix, "%Y%m%dT%H%M%S", &utc);
        assert (len == 15);
        self->prefix_second = second;
    }
    memcpy (key, self->prefix, 15);
    s_put_digits (key + 15, (uint32_t) (self->last_ms % 1000), 3);
    s_put_digits (key + 18, self->last_seq, 9);
    key[SN_KEY_TIME_LEN] = '-';
    strcpy (key + SN_KEY_TIME_LEN + 1, self->name);
}

void
sn_keygen_resume (sn_keygen_t *self, int64_t last_ms, uint32_t last_seq)
{
    assert (self);
    //  A resume point past what a key can hold comes from damaged state: ignored
    if (last_ms < 0 || last_ms > SN_KEY_MS_MAX)
        return;
    if (!self->started || last_ms > self->last_ms ||
        (last_ms == self->last_ms && last_seq > self->last_seq)) {
        self->last_ms = last_ms;
        self->last_seq = last_seq > SN_KEY_SEQ_MAX ? SN_KEY_SEQ_MAX : last_seq;
        self->started = true;
    }
}

int64_t
sn_keygen_last_ms (sn_keygen_t *self)
{
    assert (self);
    return self->last_ms;
}

uint32_t
sn_keygen_last_seq (sn_keygen_t *self)
{
    assert (self);
    return self->last_seq;
}

//  Parse width decimal digits; -1 if any is not a digit.
static int
s_digits (const char *text, int width)
{
    int value = 0;
    for (int i = 0; i < width; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        value = value * 10 + (text[i] - '0');
    }
    return value;
}

static bool
s_name_char (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

//  True when the len bytes at name form a valid node name.
static bool
s_name_valid (const char *name, size_t len)
{
    if (len == 0 || len > SN_NAME_MAX || name[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!s_name_char (name[i]))
            return false;
    return true;
}

bool
sn_name_valid (const char *name)
{
    return name && s_name_valid (name, strlen (name));
}

//  Days in a month of the Gregorian calendar.
static int
s_month_days (int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return days[month - 1] + (month == 2 && leap);
}

//  Days from 1970-01-01 to a date from 1970 on. Every key that reaches a node is
//  parsed, so this is arithmetic rather than timegm, which takes the C library's
//  locks and time-zone state on each call. Years are counted from 1 March, which
//  puts the leap day at the end of its year.
static int64_t
s_days (int year, int month, int day)
{
    if (month <= 2)
        year--;
    int64_t cycle = year / 400; //  of 146097 days
    int64_t year_of_cycle = year - cycle * 400;
    int64_t day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    int64_t day_of_cycle =
        year_of_cycle * 365 + year_of_cycle / 4 - year_of_cycle / 100 + day_of_year;
    return cycle * 146097 + day_of_cycle - 719468; //  719468: 0000-03-01 to 1970-01-01
}

int64_t
sn_key_time (const char *key, size_t len)
{
    if (!key || len < SN_KEY_TIME_LEN || len > SN_KEY_MAX)
        return -1;
    if (len > SN_KEY_TIME_LEN &&
        (key[SN_KEY_TIME_LEN] != '-' ||
         !s_name_valid (key + SN_KEY_TIME_LEN + 1, len - SN_KEY_TIME_LEN - 1)))
        return -1;
    if (key[8] != 'T' || s_digits (key + 18, 9) < 0)
        return -1;
    int year = s_digits (key, 4), month = s_digits (key + 4, 2), day = s_digits (key + 6, 2);
    int hour = s_digits (key + 9, 2), minute = s_digits (key + 11, 2);
    int second = s_digits (key + 13, 2), msec = s_digits (key + 15, 3);
    if (year < 1970 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 ||
        minute < 0 || minute > 59 || second < 0 || second > 59 || msec < 0)
        return -1;
    if (day > s_month_days (year, month))
        return -1;
    int64_t seconds = s_days (year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    return seconds * 1000 + msec;
}

//  FNV-1a over the bytes, then a 64-bit finaliser so that nearby keys spread over
//  every bit: rendezvous hashing and partitioning both need well-mixed low bits.
uint64_t
sn_hash (const void *data, size_t size)
{
    const byte *p = (const byte *) data;
    uint64_t hash = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < size; i++) {
        hash ^= p[i];
        hash *= 0x100000001b3ULL;
    }
    hash ^= hash >> 33;
    hash *= 0xff51afd7ed558ccdULL;
    hash ^= hash >> 33;
    hash *= 0xc4ceb9fe1a85ec53ULL;
    hash ^= hash >> 33;
    return hash;
}

void
sn_key_time_prefix (int64_t ms, char *out)
{
    sn_keygen_t *keygen = sn_keygen_new ("t");
    char key[SN_KEY_MAX + 1];
    sn_keygen_next (keygen, ms, key);
    sn_keygen_destroy (&keygen);
    memcpy (out, key, SN_KEY_TIME_LEN);
    out[SN_KEY_TIME_LEN] = 0;
}

uint32_t
sn_partition (const void *pkey, size_t size, uint32_t partitions)
{
    assert (partitions > 0);
    return (uint32_t) (sn_hash (pkey, size) % partitions);
}

int64_t
sn_horizon_advance (sn_horizon_t *self, int64_t wall, int64_t mono, int64_t retention)
{
    int64_t candidate = wall - retention;
    if (!self->started) {
        self->started = true;
        self->horizon = self->anchor = candidate;
        self->anchor_at = mono;
        self->ahead = 0;
        return self->horizon;
    }
    //  The limit counts from the last agreement, not from the last call, so that the
    //  slack is not added once per call
    int64_t limit = self->anchor + (mono - self->anchor_at) + SN_HORIZON_SLACK_MS;
    self->ahead = 0;
    if (candidate > limit) {
        self->ahead = candidate - limit;
        if (limit > self->horizon)
            self->horizon = limit;
    }
    else if (candidate >= self->horizon) {
        self->horizon = self->anchor = candidate;
        self->anchor_at = mono;
    }
    //  A clock stepped back keeps the anchor, so that the horizon goes on from where it
    //  was once the clock is right again
    return self->horizon;
}

bool
sn_horizon_warn (sn_horizon_t *self, int64_t mono)
{
    if (self->ahead <= 60 * 1000 || (self->warned_at && mono - self->warned_at < 60 * 1000))
        return false;
    self->warned_at = mono;
    return true;
}

int64_t
sn_horizon_now (sn_horizon_t *self, int64_t retention, const char *owner)
{
    if (!retention)
        return 0;
    int64_t horizon = sn_horizon_advance (self, zclock_time (), zclock_mono (), retention);
    if (sn_horizon_warn (self, zclock_mono ()))
        zsys_warning ("%s: the wall clock is %" PRId64 " s ahead of monotonic time since start: "
                      "retention follows monotonic time until restart",
                      owner, self->ahead / 1000);
    return horizon;
}

//  A simulated run: the wall clock steps forward and back, the monotonic one does not.
static void
s_horizon_test (void)
{
    int64_t hour = 3600 * 1000LL, wall = 1795349594123LL, mono = 1000;
    sn_horizon_t horizon = {0};
    assert (sn_horizon_advance (&horizon, wall, mono, hour) == wall - hour);
    assert (!sn_horizon_warn (&horizon, mono));
    //  Both clocks agree: the horizon follows the wall clock
    wall += 5000, mono += 5000;
    assert (sn_horizon_advance (&horizon, wall, mono, hour) == wall - hour);
    //  The wall clock steps a day forward: the horizon moves as fast as mono time,
    //  however often it is asked
    int64_t before = horizon.horizon;
    wall += 24 * hour;
    for (int index = 0; index < 1000; index++) {
        wall += 10, mono += 10;
        sn_horizon_advance (&horizon, wall, mono, hour);
    }
    assert (horizon.horizon <= before + 10000 + SN_HORIZON_SLACK_MS);
    assert (horizon.horizon >= before + 10000);
    assert (horizon.ahead > 23 * hour);
    assert (sn_horizon_warn (&horizon, mono));
    assert (!sn_horizon_warn (&horizon, mono + 1000));
    assert (sn_horizon_warn (&horizon, mono + 61000));
    //  The wall clock steps back to the right time: the horizon is where mono time
    //  put it, and follows the wall clock again
    wall -= 24 * hour, mono += 1000, wall += 1000;
    assert (sn_horizon_advance (&horizon, wall, mono, hour) == wall - hour);
    assert (horizon.ahead == 0);
    //  Stepped an hour back: the horizon stays, then the clock comes back and the
    //  horizon goes on from the time it would have had
    before = horizon.horizon;
    wall -= hour;
    for (int index = 0; index < 100; index++) {
        wall += 100, mono += 100;
        assert (sn_horizon_advance (&horizon, wall, mono, hour) == before);
    }
    wall += hour;
    assert (sn_horizon_advance (&horizon, wall, mono, hour) == wall - hour);
    //  Small drift between both clocks is taken
    wall += 1500, mono += 1000;
    assert (sn_horizon_advance (&horizon, wall, mono, hour) == wall - hour);
}

void
sn_key_test (bool verbose)
{
    s_horizon_test ();
    sn_keygen_t *keygen = sn_keygen_new ("n1");
    char key[SN_KEY_MAX + 1], previous[SN_KEY_MAX + 1];
    //  2026-11-22 12:13:14.123 UTC
    int64_t now = 1795349594123LL;
    sn_keygen_next (keygen, now, key);
    assert (streq (key, "20261122T121314123000000000-n1"));
    assert (strlen (key) == SN_KEY_TIME_LEN + 3);
    char prefix[SN_KEY_TIME_LEN + 1];
    sn_key_time_prefix (now, prefix);
    assert (streq (prefix, "20261122T121314123000000000"));
    assert (sn_key_time (key, strlen (key)) == now);
    assert (sn_key_time (key, SN_KEY_TIME_LEN) == now);

    //  A time past what a key holds stays at the last millisecond of year 9999
    sn_keygen_t *late = sn_keygen_new ("n9");
    char last[SN_KEY_MAX + 1];
    sn_keygen_next (late, SN_KEY_MS_MAX + 3600 * 1000, last);
    assert (streq (last, "99991231T235959999000000000-n9"));
    sn_keygen_next (late, SN_KEY_MS_MAX + 7200 * 1000, last);
    assert (streq (last, "99991231T235959999000000001-n9"));
    sn_keygen_destroy (&late);

    //  Same millisecond, then a clock that steps back: still strictly increasing
    strcpy (previous, key);
    sn_keygen_next (keygen, now, key);
    assert (streq (key, "20261122T121314123000000001-n1"));
    assert (strcmp (previous, key) < 0);
    strcpy (previous, key);
    sn_keygen_next (keygen, now - 5000, key);
    assert (strcmp (previous, key) < 0);
    strcpy (previous, key);
    sn_keygen_next (keygen, now + 1, key);
    assert (streq (key, "20261122T121314124000000000-n1"));
    assert (strcmp (previous, key) < 0);

    //  Resuming after a restart never goes back
    sn_keygen_t *restarted = sn_keygen_new ("n1");
    sn_keygen_resume (restarted, sn_keygen_last_ms (keygen), sn_keygen_last_seq (keygen));
    sn_keygen_next (restarted, now - 60000, previous);
    assert (strcmp (key, previous) < 0);
    sn_keygen_destroy (&restarted);
    sn_keygen_destroy (&restarted);

    //  A resume point no key can hold is ignored, not trusted
    sn_keygen_t *damaged = sn_keygen_new ("n1");
    sn_keygen_resume (damaged, 999999999999999LL, 0);
    sn_keygen_next (damaged, now, key);
    assert (streq (key, "20261122T121314123000000000-n1"));
    sn_keygen_destroy (&damaged);

    //  Sequence overflow moves to the next millisecond
    sn_keygen_resume (keygen, now + 10, SN_KEY_SEQ_MAX);
    sn_keygen_next (keygen, now, key);
    assert (sn_key_time (key, strlen (key)) == now + 11);

    //  What is and is not a key
    assert (sn_key_time ("20131016T000000000000000000", 27) == 1381881600000LL);
    assert (sn_key_time ("20131016T000000000000000000-", 28) == -1);
    assert (sn_key_time ("20131016T000000000000000000-n 1", 31) == -1);
    assert (sn_key_time ("20131016X000000000000000000", 27) == -1);
    assert (sn_key_time ("20130231T000000000000000000", 27) == -1);
    assert (sn_key_time ("20131016T250000000000000000", 27) == -1);
    assert (sn_key_time ("2013101", 7) == -1);
    assert (sn_key_time ("20131016T00000000000000000a", 27) == -1);
    assert (sn_key_time (NULL, 0) == -1);
    assert (sn_key_time ("20240229T000000000000000000", 27) == 1709164800000LL);
    assert (sn_key_time ("20230229T000000000000000000", 27) == -1);
    assert (sn_key_time ("21000229T000000000000000000", 27) == -1);
    assert (sn_key_time ("20000229T000000000000000000", 27) == 951782400000LL);
    //  Every day from 1970 to 2200 against the C library's own conversion
    for (time_t seconds = 0; seconds < 7258118400; seconds += 86400 + 3661) {
        struct tm utc;
        gmtime_r (&seconds, &utc);
        char text[64];
        snprintf (text, sizeof text, "%04d%02d%02dT%02d%02d%02d000000000000", utc.tm_year + 1900,
                  utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
        assert (sn_key_time (text, SN_KEY_TIME_LEN) == (int64_t) seconds * 1000);
    }

    assert (sn_name_valid ("node-1.example_x"));
    assert (!sn_name_valid (""));
    assert (!sn_name_valid ("-n"));
    assert (!sn_name_valid ("a/b"));
    char longname[SN_NAME_MAX + 2];
    memset (longname, 'a', sizeof longname - 1);
    longname[SN_NAME_MAX + 1] = 0;
    assert (!sn_name_valid (longname));
    longname[SN_NAME_MAX] = 0;
    assert (sn_name_valid (longname));

    //  Hashes are stable across builds and spread keys over partitions
    assert (sn_hash ("", 0) == sn_hash ("", 0));
    assert (sn_hash ("a", 1) != sn_hash ("b", 1));
    uint32_t counts[16] = {0};
    for (int i = 0; i < 16000; i++) {
        sn_keygen_next (keygen, now + i / 7, key);
        counts[sn_partition (key, strlen (key), 16)]++;
    }
    for (int p = 0; p < 16; p++)
        assert (counts[p] > 800 && counts[p] < 1200);
    if (verbose)
        zsys_info ("sn_key: hash(\"supernode\")=%016" PRIx64, sn_hash ("supernode", 9));
    sn_keygen_destroy (&keygen);
}
