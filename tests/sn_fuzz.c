/*  sn_fuzz: short mutation fuzz runs of every decoder that sees outside input.

        sn_fuzz [ROUNDS] [SEED]

    Valid requests and JSON texts are mutated (bit flips, byte changes, cuts,
    duplicated runs, length bytes set to extremes) and fed to the msgpack decoder, the
    schema validator, the msgpack -> JSON conversion and the JSON parser. A run passes
    when nothing crashes or leaks (under the sanitizer build) and every rejection
    comes with a reason. Deterministic for a given seed, so a failure can be replayed.
*/
#include "sn_json.h"
#include "sn_msg.h"
#include "sn_schema.h"

static uint64_t s_state;

static uint64_t
s_random (void)
{
    //  xorshift64*: fast, and the same sequence on every machine for a seed
    s_state ^= s_state >> 12;
    s_state ^= s_state << 25;
    s_state ^= s_state >> 27;
    return s_state * 2685821657736338717ULL;
}

//  Mutate data in place (size may change, up to capacity). Returns the new size.
static size_t
s_mutate (byte *data, size_t size, size_t capacity)
{
    int edits = 1 + (int) (s_random () % 4);
    for (int edit = 0; edit < edits && size > 0; edit++) {
        size_t at = s_random () % size;
        switch (s_random () % 6) {
            case 0:
                data[at] ^= (byte) (1 << (s_random () % 8));
                break;
            case 1:
                data[at] = (byte) s_random ();
                break;
            case 2:
                size = at; //  cut
                break;
            case 3: {
                //  duplicate a run
                size_t len = 1 + s_random () % 16;
                if (at + len > size)
                    len = size - at;
                if (size + len <= capacity) {
                    memmove (data + at + len, data + at, size - at);
                    size += len;
                }
                break;
            }
            case 4:
                data[at] = (s_random () & 1) ? 0xff : 0x00; //  extreme lengths
                break;
            default: {
                static const byte markers[] = {0xdc, 0xdd, 0xde, 0xdf, 0xdb, 0xc4, 0xc1, 0x91};
                data[at] = markers[s_random () % sizeof markers];
                break;
            }
        }
    }
    return size;
}

static void
s_fuzz_msgpack (sn_schema_t *schema, const byte *seed, size_t seed_size, int rounds)
{
    size_t capacity = seed_size * 2 + 64;
    byte *buffer = (byte *) zmalloc (capacity);
    for (int round = 0; round < rounds; round++) {
        memcpy (buffer, seed, seed_size);
        size_t size = s_mutate (buffer, seed_size, capacity);
        const char *reason = NULL;
        sn_msg_t *msg = sn_msg_decode (buffer, size, 0, &reason);
        if (!msg) {
            assert (reason && *reason);
            continue;
        }
        char error[256];
        int code = sn_schema_check_request (schema, sn_msg_root (msg), size, error, sizeof error);
        assert (code == 0 || ((code == 400 || code == 413) && *error));
        char *text = sn_json_text (sn_msg_root (msg));
        assert (text); //  every decodable frame has a JSON form
        free (text);
        sn_msg_destroy (&msg);
    }
    free (buffer);
}

static void
s_fuzz_json (const char *seed, int rounds)
{
    size_t seed_size = strlen (seed);
    size_t capacity = seed_size * 2 + 64;
    byte *buffer = (byte *) zmalloc (capacity);
    sn_pack_t *pack = sn_pack_new ();
    for (int round = 0; round < rounds; round++) {
        memcpy (buffer, seed, seed_size);
        size_t size = s_mutate (buffer, seed_size, capacity);
        char error[256];
        sn_pack_reset (pack);
        if (sn_json_to_pack ((const char *) buffer, size, pack, error, sizeof error) == 0) {
            //  What the JSON parser accepts, the msgpack decoder accepts too
            sn_msg_t *msg = sn_msg_decode (sn_pack_data (pack), sn_pack_size (pack), 0, NULL);
            assert (msg);
            sn_msg_destroy (&msg);
        }
        else
            assert (*error);
    }
    sn_pack_destroy (&pack);
    free (buffer);
}

int
main (int argc, char **argv)
{
    int rounds = argc > 1 ? atoi (argv[1]) : 20000;
    s_state = argc > 2 ? strtoull (argv[2], NULL, 10) : 0x5eed;
    if (s_state == 0)
        s_state = 1;
    sn_schema_t *schema = sn_schema_new ();
    assert (schema);

    static const char *json_seeds[] = {
        "{\"op\": \"put\", \"rid\": 1, \"event\": {\"user\": \"ann\", \"n\": [1, 2.5, null, "
        "true]}}",
        "{\"op\": \"bulk\", \"rid\": 2, \"puts\": [{\"event\": {}}, {\"key\": "
        "\"20131016T101010123000000001\", \"event\": {\"a\": {\"b\": {\"c\": []}}}}]}",
        "{\"op\": \"range\", \"rid\": 3, \"from\": \"2013\", \"to\": \"2014\", \"limit\": 10}",
        "{\"op\": \"get\", \"rid\": 4, \"key\": \"20131016T101010123000000001-n1\"}",
        "{\"op\": \"digest\", \"rid\": 5, \"p\": 17}",
        "{\"op\": \"enqueue\", \"rid\": 6, \"token\": \"t\", \"bucket_id\": \"b\", \"data\": "
        "{\"n\": 1}, \"invocation\": {\"class\": \"m.U\", \"method\": \"s\", \"params\": [1, "
        "[2]]}, \"delay\": 5}",
        "{\"op\": \"worker.result\", \"rid\": 7, \"id\": \"x-1\", \"code\": 503, \"response\": "
        "{\"a\": [true]}, \"error\": \"e\", \"retryable\": true}",
        "{\"op\": \"worker.hello\", \"rid\": 8, \"classes\": [\"a.B\"], \"capacity\": 2}",
        "{\"op\": \"batch.create\", \"rid\": 9, \"callback_url\": \"https://h/x\", "
        "\"bucket_id\": \"b\", \"batch_timeout\": 100, \"metadata\": {\"k\": [1]}}",
        "{\"text\": \"\\u00fcn\\u00efc\\u00f6d\\u00e9 \\ud83d\\ude00\", \"big\": 9007199254740993}",
        NULL};
    sn_pack_t *pack = sn_pack_new ();
    for (const char **seed = json_seeds; *seed; seed++) {
        char error[256];
        sn_pack_reset (pack);
        assert (sn_json_to_pack (*seed, strlen (*seed), pack, error, sizeof error) == 0);
        s_fuzz_msgpack (schema, sn_pack_data (pack), sn_pack_size (pack), rounds);
        s_fuzz_json (*seed, rounds / 4);
    }
    sn_pack_destroy (&pack);
    sn_schema_destroy (&schema);
    printf ("sn_fuzz: %d rounds per seed, no crash\n", rounds);
    return 0;
}
