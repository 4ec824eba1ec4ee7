/*  sn_bench: the ZeroMQ load generator of bench/run, and its raw baseline.

    sn_bench free-port [N]                          N distinct free loopback TCP ports
    sn_bench echo-server ENDPOINT                   ROUTER that sends every message back
    sn_bench store-server ENDPOINT DIR              ROUTER that stores every put durably
    sn_bench put ENDPOINT SECONDS WINDOW SIZE       put ops into a supernode
    sn_bench bulk ENDPOINT SECONDS WINDOW SIZE BATCH
                                                    bulk ops of BATCH puts each
    sn_bench rtt ENDPOINT SECONDS WINDOW SIZE [BATCH]
                                                    the same frames through an echo server
    sn_bench enqueue ENDPOINT SECONDS WINDOW SIZE   enqueue ops into a supernode
    sn_bench e2e ENDPOINT COUNT WINDOW SIZE         COUNT enqueues run to the end by workers
    sn_bench rtt-count ENDPOINT COUNT WINDOW SIZE   COUNT enqueue frames through an echo server
    sn_bench beanstalk HOST:PORT SECONDS WINDOW SIZE
                                                    beanstalkd put of the enqueue frame
    sn_bench redis HOST:PORT SECONDS WINDOW SIZE    Redis LPUSH of the enqueue frame

    A load run keeps WINDOW requests in flight on one DEALER, stops sending at the
    deadline and then waits for every outstanding reply (10 s at most). It prints one
    line, "<rate> <unit> sent=.. acked=.. refused=.. lost=.. stray=.. seconds=..", and
    exits 1 when anything was refused, lost or unexpected. Only replies that
    match a request still in flight count: for put a 201, for bulk each 201 among the
    results, for rtt each echoed request (BATCH events when BATCH is given). The rate
    is what was acknowledged divided by the time from the first send to the last
    reply, so the drain after the deadline is paid for.

    put and rtt send byte-identical frames: {op, rid, event} with an event of about
    SIZE bytes (bulk: {op, rid, puts: [{event}...]}), so the baseline moves the same
    bytes through the same kind of sockets and the client decodes every reply the
    same way.

    enqueue sends {op, rid, token, invocation: {class, method, params: [event]}} and
    counts each 202. beanstalk and redis send those very bytes as the job body over one
    TCP connection in their text protocols (put / LPUSH), WINDOW commands in flight,
    and count each INSERTED / integer reply; any other reply is a refusal.

    e2e enqueues COUNT invocations of class bench.Worker (WINDOW in flight) into a
    node whose workers are already connected, polls bucket.counts of primary until
    COUNT have finished, and rates COUNT by the time from the first enqueue to that
    answer. Then, untimed, it asks every invocation's state: all must have succeeded.
    rtt-count is its baseline: the same COUNT enqueue frames through an echo server.

    store-server is the least a durable put can cost here: one thread, one ROUTER,
    and an LMDB environment in DIR; every message read in one go is written in one
    transaction (one fsync) under a counter key and answered {rid, code: 201, key}
    once committed. No schema, no index, no digest, no actors, no mesh: what it
    reaches against echo-server bounds what any design of put can reach against it
    on the same machine.
*/
#include "sn_msg.h"
#include <arpa/inet.h>
#include <lmdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

//  How long to wait for outstanding replies after the deadline before calling
//  them lost.
#define S_DRAIN_USECS (10 * 1000 * 1000)

//  How long e2e and rtt-count may take before what is missing is called lost.
#define S_COUNTED_SECONDS 120

typedef enum { S_PUT, S_BULK, S_RTT, S_ENQUEUE, S_CHECK } s_mode_t;

//  The class e2e enqueues and bench/run's workers offer.
#define S_CLASS "bench.Worker"

//  One load run.
typedef struct {
    s_mode_t mode;        //  what is sent and how replies are counted
    const char *endpoint; //  where the DEALER connects
    double seconds;       //  how long to keep sending
    uint32_t window;      //  requests in flight at most
    size_t size;          //  bytes of each event (approximately)
    uint32_t batch;       //  puts per bulk message; 0 for single puts
    bool enqueue;         //  requests are enqueue ops (rtt: echoed enqueue frames)
    uint64_t limit;       //  requests to send at most; 0 for no limit
    bool quiet;           //  no result line: a step of e2e
    char **ids;           //  enqueue: ids[rid] from each 202; check: what to ask
    sn_pack_t *pack;      //  request buffer, reused
    size_t padding;       //  payload length that makes an event about size bytes
    byte *pending;        //  pending[rid] is 1 while request rid awaits its reply
    size_t pending_size;  //  entries allocated in pending
    uint64_t sent;        //  requests sent
    uint64_t in_flight;   //  requests sent and not answered
    uint64_t acked;       //  units acknowledged (messages or events)
    uint64_t refused;     //  units answered with anything but success
    uint64_t stray;       //  replies that matched no request in flight
    bool told;            //  the first refusal has been explained on stderr
} s_load_t;

static void
s_pack_event (s_load_t *self, uint64_t seq, size_t padding)
{
    static const char filler[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    char payload[65536];
    assert (padding < sizeof (payload));
    for (size_t i = 0; i < padding; i++)
        payload[i] = filler[i % (sizeof (filler) - 1)];
    sn_pack_map (self->pack, 5);
    sn_pack_kv_str (self->pack, "source", "bench");
    sn_pack_kv_str (self->pack, "kind", "page_view");
    sn_pack_kv_uint (self->pack, "seq", seq);
    sn_pack_kv_str (self->pack, "user", "u-000123");
    sn_pack_str (self->pack, "payload");
    sn_pack_strn (self->pack, payload, padding);
}

//  The payload length that makes an event self->size bytes, or the nearest above.
static size_t
s_padding_for (s_load_t *self)
{
    size_t padding = 0;
    while (padding < 65000) {
        sn_pack_reset (self->pack);
        s_pack_event (self, 0, padding);
        if (sn_pack_size (self->pack) >= self->size)
            break;
        padding++;
    }
    return padding;
}

static void
s_pack_request (s_load_t *self, uint64_t rid)
{
    sn_pack_reset (self->pack);
    if (self->mode == S_CHECK) {
        sn_pack_map (self->pack, 3);
        sn_pack_kv_str (self->pack, "op", "invocation");
        sn_pack_kv_uint (self->pack, "rid", rid);
        sn_pack_kv_str (self->pack, "id", self->ids[rid]);
        return;
    }
    if (self->enqueue) {
        sn_pack_map (self->pack, 4);
        sn_pack_kv_str (self->pack, "op", "enqueue");
        sn_pack_kv_uint (self->pack, "rid", rid);
        sn_pack_kv_str (self->pack, "token", "bench");
        sn_pack_str (self->pack, "invocation");
        sn_pack_map (self->pack, 3);
        sn_pack_kv_str (self->pack, "class", S_CLASS);
        sn_pack_kv_str (self->pack, "method", "run");
        sn_pack_str (self->pack, "params");
        sn_pack_array (self->pack, 1);
        s_pack_event (self, rid, self->padding);
        return;
    }
    sn_pack_map (self->pack, 3);
    sn_pack_kv_str (self->pack, "op", self->batch ? "bulk" : "put");
    sn_pack_kv_uint (self->pack, "rid", rid);
    if (self->batch) {
        sn_pack_str (self->pack, "puts");
        sn_pack_array (self->pack, self->batch);
        for (uint32_t i = 0; i < self->batch; i++) {
            sn_pack_map (self->pack, 1);
            sn_pack_str (self->pack, "event");
            s_pack_event (self, rid * self->batch + i, self->padding);
        }
    }
    else {
        sn_pack_str (self->pack, "event");
        s_pack_event (self, rid, self->padding);
    }
}

static void
s_mark_pending (s_load_t *self, uint64_t rid)
{
    if (rid >= self->pending_size) {
        size_t size = self->pending_size ? self->pending_size * 2 : 65536;
        while (size <= rid)
            size *= 2;
        self->pending = (byte *) realloc (self->pending, size);
        assert (self->pending);
        memset (self->pending + self->pending_size, 0, size - self->pending_size);
        self->pending_size = size;
    }
    self->pending[rid] = 1;
}

static void
s_refused (s_load_t *self, uint64_t units, const sn_value_t *reply)
{
    self->refused += units;
    if (!self->told) {
        char *error = sn_value_get_strdup (reply, "error");
        uint64_t code = 0;
        sn_value_uint (sn_value_get (reply, "code"), &code);
        fprintf (stderr, "sn_bench: first refusal: code %" PRIu64 ": %s\n", code,
                 error ? error : "(no error text)");
        free (error);
        self->told = true;
    }
}

//  Counts one reply. A reply that does not decode or whose rid is not in flight
//  is counted as stray: it acknowledges nothing.
static void
s_take_reply (s_load_t *self, const void *data, size_t size)
{
    sn_msg_t *msg = sn_msg_decode (data, size, 0, NULL);
    const sn_value_t *root = msg ? sn_msg_root (msg) : NULL;
    uint64_t rid;
    if (!sn_value_uint (sn_value_get (root, "rid"), &rid) || rid >= self->pending_size ||
        !self->pending[rid]) {
        self->stray++;
        sn_msg_destroy (&msg);
        return;
    }
    self->pending[rid] = 0;
    self->in_flight--;

    uint64_t code = 0;
    sn_value_uint (sn_value_get (root, "code"), &code);
    if (self->mode == S_RTT)
        self->acked += self->batch ? self->batch : 1;
    else if (self->mode == S_PUT) {
        if (code == 201)
            self->acked++;
        else
            s_refused (self, 1, root);
    }
    else if (self->mode == S_ENQUEUE) {
        char *id = sn_value_get_strdup (root, "id");
        if (code == 202 && id) {
            self->acked++;
            if (self->ids)
                self->ids[rid] = id;
            else
                free (id);
        }
        else {
            free (id);
            s_refused (self, 1, root);
        }
    }
    else if (self->mode == S_CHECK) {
        if (code == 200 &&
            sn_value_streq (sn_value_get (sn_value_get (root, "invocation"), "state"), "succeeded"))
            self->acked++;
        else
            s_refused (self, 1, root);
    }
    else {
        const sn_value_t *results = sn_value_get (root, "results");
        size_t count = sn_value_size (results);
        if (code != 200 || !sn_value_is (results, SN_TYPE_ARRAY) || count != self->batch)
            s_refused (self, self->batch, root);
        else
            for (size_t i = 0; i < count; i++) {
                const sn_value_t *result = sn_value_at (results, i);
                uint64_t item_code = 0;
                sn_value_uint (sn_value_get (result, "code"), &item_code);
                if (item_code == 201)
                    self->acked++;
                else
                    s_refused (self, 1, result);
            }
    }
    sn_msg_destroy (&msg);
}

//  Which requests were never answered, as ranges of rids: where they fall says
//  more about the cause than how many there are.
static void
s_tell_lost (s_load_t *self)
{
    fprintf (stderr, "sn_bench: %" PRIu64 " requests never answered, rids", self->in_flight);
    int ranges = 0;
    uint64_t rid = 0;
    while (rid < self->sent && ranges < 8) {
        if (!self->pending[rid]) {
            rid++;
            continue;
        }
        uint64_t first = rid;
        while (rid < self->sent && self->pending[rid])
            rid++;
        fprintf (stderr, " %" PRIu64 "-%" PRIu64, first, rid - 1);
        ranges++;
    }
    fprintf (stderr, "%s\n", rid < self->sent ? " ..." : "");
}

static int
s_load (s_load_t *self)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert (dealer);
    //  The window bounds what is queued; a high-water mark would only add a second,
    //  silent bound
    zsock_set_sndhwm (dealer, 0);
    zsock_set_rcvhwm (dealer, 0);
    zsock_set_linger (dealer, 0);
    if (zsock_connect (dealer, "%s", self->endpoint) == -1) {
        fprintf (stderr, "sn_bench: cannot connect to %s\n", self->endpoint);
        zsock_destroy (&dealer);
        return 1;
    }
    void *handle = zsock_resolve (dealer);
    self->pack = sn_pack_new ();
    self->padding = s_padding_for (self);
    s_pack_request (self, 0);
    size_t request_size = sn_pack_size (self->pack);

    int64_t start = zclock_usecs ();
    int64_t deadline = start + (int64_t) (self->seconds * 1e6);
    int64_t drain_deadline = deadline + S_DRAIN_USECS;
    int64_t last_reply = start;
    while (!zsys_interrupted) {
        int64_t now = zclock_usecs ();
        bool sending = now < deadline && (!self->limit || self->sent < self->limit);
        if (!sending && (self->in_flight == 0 || now >= drain_deadline))
            break;
        while (sending && self->in_flight < self->window &&
               (!self->limit || self->sent < self->limit)) {
            uint64_t rid = self->sent;
            s_pack_request (self, rid);
            if (zmq_send (handle, sn_pack_data (self->pack), sn_pack_size (self->pack),
                          ZMQ_DONTWAIT) == -1)
                break;
            s_mark_pending (self, rid);
            self->sent++;
            self->in_flight++;
        }
        int64_t until = sending ? deadline : drain_deadline;
        long timeout = (long) ((until - now) / 1000) + 1;
        zmq_pollitem_t item = {handle, 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, timeout) <= 0)
            continue;
        zmq_msg_t reply;
        zmq_msg_init (&reply);
        while (zmq_msg_recv (&reply, handle, ZMQ_DONTWAIT) != -1) {
            s_take_reply (self, zmq_msg_data (&reply), zmq_msg_size (&reply));
            zmq_msg_close (&reply);
            zmq_msg_init (&reply);
        }
        zmq_msg_close (&reply);
        last_reply = zclock_usecs ();
    }
    double elapsed = (double) (last_reply - start) / 1e6;
    double rate = elapsed > 0 ? (double) self->acked / elapsed : 0;
    const char *unit =
        self->mode == S_BULK || (self->mode == S_RTT && self->batch) ? "events/s" : "msg/s";
    if (!self->quiet)
        printf ("%.0f %s sent=%" PRIu64 " acked=%" PRIu64 " refused=%" PRIu64 " lost=%" PRIu64
                " stray=%" PRIu64 " seconds=%.2f request_bytes=%zu\n",
                rate, unit, self->sent, self->acked, self->refused, self->in_flight, self->stray,
                elapsed, request_size);
    if (self->in_flight)
        s_tell_lost (self);
    sn_pack_destroy (&self->pack);
    free (self->pending);
    zsock_destroy (&dealer);
    return self->in_flight || self->stray || self->refused ? 1 : 0;
}

//  bucket.counts of primary: the number of finished invocations, or -1 when the
//  node did not answer as it should within 10 s.
static int64_t
s_finished (void *handle, uint64_t rid)
{
    sn_pack_t *pack = sn_pack_new ();
    sn_pack_map (pack, 3);
    sn_pack_kv_str (pack, "op", "bucket.counts");
    sn_pack_kv_uint (pack, "rid", rid);
    sn_pack_kv_str (pack, "bucket_id", "primary");
    int rc = zmq_send (handle, sn_pack_data (pack), sn_pack_size (pack), 0);
    sn_pack_destroy (&pack);
    if (rc == -1)
        return -1;
    zmq_pollitem_t item = {handle, 0, ZMQ_POLLIN, 0};
    if (zmq_poll (&item, 1, 10000) <= 0)
        return -1;
    zmq_msg_t reply;
    zmq_msg_init (&reply);
    int64_t finished = -1;
    if (zmq_msg_recv (&reply, handle, 0) != -1) {
        sn_msg_t *msg = sn_msg_decode (zmq_msg_data (&reply), zmq_msg_size (&reply), 0, NULL);
        const sn_value_t *root = msg ? sn_msg_root (msg) : NULL;
        uint64_t code = 0, reply_rid = 0, count = 0;
        if (sn_value_uint (sn_value_get (root, "code"), &code) && code == 200 &&
            sn_value_uint (sn_value_get (root, "rid"), &reply_rid) && reply_rid == rid &&
            sn_value_uint (sn_value_get (root, "finished"), &count))
            finished = (int64_t) count;
        sn_msg_destroy (&msg);
    }
    zmq_msg_close (&reply);
    return finished;
}

//  Enqueues self->limit invocations, waits until all have finished, then checks that
//  every one succeeded. The rate is invocations per second from the first enqueue to
//  the answer that says all have finished.
static int
s_e2e (s_load_t *self)
{
    uint64_t count = self->limit;
    self->ids = (char **) calloc (count, sizeof (char *));
    assert (self->ids);
    self->quiet = true;
    int64_t start = zclock_usecs ();
    int rc = s_load (self);
    uint64_t enqueued = self->acked;

    int64_t finished = -1, polls = 0;
    int64_t deadline = zclock_usecs () + (int64_t) (self->seconds * 1e6);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    assert (dealer);
    zsock_set_linger (dealer, 0);
    if (zsock_connect (dealer, "%s", self->endpoint) == -1)
        rc = 1;
    while (rc == 0 && !zsys_interrupted) {
        finished = s_finished (zsock_resolve (dealer), (uint64_t) ++polls);
        if (finished < 0) {
            fprintf (stderr, "sn_bench: no answer to bucket.counts\n");
            rc = 1;
        }
        else if ((uint64_t) finished >= count)
            break;
        else if (zclock_usecs () >= deadline) {
            fprintf (stderr, "sn_bench: %" PRId64 " of %" PRIu64 " finished in %.0f s\n", finished,
                     count, self->seconds);
            rc = 1;
        }
        else
            zclock_sleep (10);
    }
    int64_t end = zclock_usecs ();
    zsock_destroy (&dealer);

    uint64_t succeeded = 0;
    if (rc == 0) {
        s_load_t check = *self;
        check.mode = S_CHECK;
        check.sent = check.in_flight = check.acked = check.refused = check.stray = 0;
        check.pending = NULL;
        check.pending_size = 0;
        check.told = false;
        rc = s_load (&check);
        succeeded = check.acked;
    }
    double elapsed = (double) (end - start) / 1e6;
    double rate = rc == 0 && elapsed > 0 ? (double) count / elapsed : 0;
    printf ("%.0f invocations/s count=%" PRIu64 " enqueued=%" PRIu64 " finished=%" PRId64
            " succeeded=%" PRIu64 " seconds=%.2f\n",
            rate, count, enqueued, finished, succeeded, elapsed);
    for (uint64_t i = 0; i < count; i++)
        free (self->ids[i]);
    free (self->ids);
    return rc;
}

//  One load run of beanstalkd put or Redis LPUSH over a plain TCP connection.
typedef struct {
    bool redis;          //  LPUSH and integer replies, else put and INSERTED
    const char *address; //  HOST:PORT
    double seconds;      //  how long to keep sending
    uint32_t window;     //  commands in flight at most
    size_t size;         //  bytes of each event inside the enqueue frame
    char *out;           //  commands not yet written
    size_t out_used;     //  bytes in out
    size_t out_size;     //  bytes allocated for out
    char in[65536];      //  replies not yet parsed
    size_t in_used;      //  bytes in in
    uint64_t sent;       //  commands queued for writing
    uint64_t in_flight;  //  commands sent and not answered
    uint64_t acked;      //  commands answered with success
    uint64_t refused;    //  commands answered with anything else
    uint64_t stray;      //  replies when nothing was in flight
} s_text_load_t;

static void
s_text_append (s_text_load_t *self, const void *data, size_t size)
{
    if (self->out_used + size > self->out_size) {
        self->out_size = (self->out_used + size) * 2;
        self->out = (char *) realloc (self->out, self->out_size);
        assert (self->out);
    }
    memcpy (self->out + self->out_used, data, size);
    self->out_used += size;
}

static void
s_text_command (s_text_load_t *self, const byte *body, size_t size)
{
    char header[128];
    int length;
    if (self->redis)
        length =
            snprintf (header, sizeof header, "*3\r\n$5\r\nLPUSH\r\n$5\r\nbench\r\n$%zu\r\n", size);
    else
        length = snprintf (header, sizeof header, "put 1024 0 60 %zu\r\n", size);
    s_text_append (self, header, (size_t) length);
    s_text_append (self, body, size);
    s_text_append (self, "\r\n", 2);
}

//  Counts every complete reply line in self->in.
static void
s_text_replies (s_text_load_t *self)
{
    char *line = self->in;
    char *end;
    while ((end = (char *) memchr (line, '\n', (size_t) (self->in + self->in_used - line)))) {
        if (self->in_flight == 0)
            self->stray++;
        else {
            self->in_flight--;
            bool ok = self->redis ? line[0] == ':' : strncmp (line, "INSERTED ", 9) == 0;
            if (ok)
                self->acked++;
            else if (self->refused++ == 0)
                fprintf (stderr, "sn_bench: first refusal: %.*s\n", (int) (end - line), line);
        }
        line = end + 1;
    }
    self->in_used -= (size_t) (line - self->in);
    memmove (self->in, line, self->in_used);
}

static int
s_text_load (s_text_load_t *self)
{
    const char *colon = strrchr (self->address, ':');
    struct sockaddr_in address = {.sin_family = AF_INET};
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    if (!colon || fd == -1)
        return 1;
    char host[64];
    snprintf (host, sizeof host, "%.*s", (int) (colon - self->address), self->address);
    address.sin_port = htons ((uint16_t) atoi (colon + 1));
    int one = 1;
    if (inet_pton (AF_INET, host, &address.sin_addr) != 1 ||
        connect (fd, (struct sockaddr *) &address, sizeof address) == -1 ||
        setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == -1) {
        fprintf (stderr, "sn_bench: cannot connect to %s: %s\n", self->address, strerror (errno));
        close (fd);
        return 1;
    }
    //  The body is the enqueue frame sn_bench enqueue sends, so both carry the same bytes
    s_load_t frame = {.mode = S_ENQUEUE, .enqueue = true, .size = self->size};
    frame.pack = sn_pack_new ();
    frame.padding = s_padding_for (&frame);
    s_pack_request (&frame, 0);
    size_t body_size = sn_pack_size (frame.pack);

    int64_t start = zclock_usecs ();
    int64_t deadline = start + (int64_t) (self->seconds * 1e6);
    int64_t drain_deadline = deadline + S_DRAIN_USECS;
    int64_t last_reply = start;
    size_t written = 0;
    bool broken = false;
    while (!zsys_interrupted && !broken) {
        int64_t now = zclock_usecs ();
        bool sending = now < deadline;
        if (!sending && (self->in_flight == 0 || now >= drain_deadline))
            break;
        while (sending && self->in_flight < self->window) {
            s_pack_request (&frame, self->sent);
            s_text_command (self, sn_pack_data (frame.pack), sn_pack_size (frame.pack));
            self->sent++;
            self->in_flight++;
        }
        struct pollfd item = {fd, POLLIN, 0};
        if (written < self->out_used)
            item.events |= POLLOUT;
        int64_t until = sending ? deadline : drain_deadline;
        if (poll (&item, 1, (int) ((until - now) / 1000) + 1) <= 0)
            continue;
        if (item.revents & POLLOUT) {
            ssize_t rc = send (fd, self->out + written, self->out_used - written, MSG_DONTWAIT);
            if (rc > 0)
                written += (size_t) rc;
            else if (rc == -1 && errno != EAGAIN && errno != EINTR)
                broken = true;
            if (written == self->out_used)
                written = self->out_used = 0;
        }
        if (item.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t rc = recv (fd, self->in + self->in_used, sizeof (self->in) - self->in_used,
                               MSG_DONTWAIT);
            if (rc == 0 || (rc == -1 && errno != EAGAIN && errno != EINTR))
                broken = true;
            else if (rc > 0) {
                self->in_used += (size_t) rc;
                s_text_replies (self);
                last_reply = zclock_usecs ();
            }
        }
    }
    if (broken)
        fprintf (stderr, "sn_bench: connection to %s lost\n", self->address);
    double elapsed = (double) (last_reply - start) / 1e6;
    double rate = elapsed > 0 ? (double) self->acked / elapsed : 0;
    printf ("%.0f msg/s sent=%" PRIu64 " acked=%" PRIu64 " refused=%" PRIu64 " lost=%" PRIu64
            " stray=%" PRIu64 " seconds=%.2f body_bytes=%zu\n",
            rate, self->sent, self->acked, self->refused, self->in_flight, self->stray, elapsed,
            body_size);
    if (self->in_flight)
        fprintf (stderr, "sn_bench: %" PRIu64 " commands never answered\n", self->in_flight);
    sn_pack_destroy (&frame.pack);
    free (self->out);
    close (fd);
    return broken || self->in_flight || self->stray || self->refused ? 1 : 0;
}

//  Forwards every part as it came: on a ROUTER the first part is the sender's
//  identity, so sending it first routes the message back to its sender.
//  The ROUTER of a server, bound to endpoint and printed, or NULL (told on stderr).
static zsock_t *
s_server_router (const char *endpoint)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert (router);
    zsock_set_sndhwm (router, 0);
    zsock_set_rcvhwm (router, 0);
    zsock_set_linger (router, 0);
    if (zsock_bind (router, "%s", endpoint) == -1) {
        fprintf (stderr, "sn_bench: cannot bind %s\n", endpoint);
        zsock_destroy (&router);
        return NULL;
    }
    //  bench/run reads the endpoint, which names the port when it was '*'
    char *bound = zsock_last_endpoint (router);
    printf ("%s\n", bound);
    fflush (stdout);
    free (bound);
    return router;
}

static int
s_echo_server (const char *endpoint)
{
    zsock_t *router = s_server_router (endpoint);
    if (!router)
        return 1;
    void *handle = zsock_resolve (router);
    //  A signal that lands between the check of zsys_interrupted and a blocking
    //  receive would be missed, so the wait is bounded
    zmq_pollitem_t item = {handle, 0, ZMQ_POLLIN, 0};
    while (!zsys_interrupted) {
        if (zmq_poll (&item, 1, 100) <= 0)
            continue;
        zmq_msg_t part;
        zmq_msg_init (&part);
        while (zmq_msg_recv (&part, handle, ZMQ_DONTWAIT) != -1) {
            int flags = zmq_msg_more (&part) ? ZMQ_SNDMORE : 0;
            zmq_msg_send (&part, handle, flags);
            zmq_msg_close (&part);
            zmq_msg_init (&part);
        }
        zmq_msg_close (&part);
    }
    zsock_destroy (&router);
    return 0;
}

//  Messages store-server reads before it commits them
#define S_STORE_BATCH 4096

//  One transaction for the puts read, then their answers. Returns 0, or -1 when
//  LMDB failed (told on stderr).
static int
s_store_commit (MDB_env *env, MDB_dbi dbi, void *handle, zmq_msg_t *envelopes, zmq_msg_t *bodies,
                size_t count, uint64_t *counter, sn_pack_t *pack)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin (env, NULL, 0, &txn);
    char (*keys)[17] = (char (*)[17]) malloc (count * sizeof *keys);
    assert (keys);
    for (size_t index = 0; rc == 0 && index < count; index++) {
        snprintf (keys[index], sizeof keys[index], "%016" PRIx64, ++*counter);
        MDB_val key = {16, keys[index]};
        MDB_val data = {zmq_msg_size (&bodies[index]), zmq_msg_data (&bodies[index])};
        rc = mdb_put (txn, dbi, &key, &data, MDB_APPEND);
    }
    if (rc == 0)
        rc = mdb_txn_commit (txn);
    else if (txn)
        mdb_txn_abort (txn);
    for (size_t index = 0; index < count; index++) {
        sn_msg_t *msg =
            sn_msg_decode (zmq_msg_data (&bodies[index]), zmq_msg_size (&bodies[index]), 0, NULL);
        uint64_t rid = 0;
        sn_value_uint (sn_value_get (sn_msg_root (msg), "rid"), &rid);
        sn_msg_destroy (&msg);
        sn_pack_reset (pack);
        sn_pack_map (pack, rc == 0 ? 3 : 2);
        sn_pack_kv_uint (pack, "rid", rid);
        sn_pack_kv_uint (pack, "code", rc == 0 ? 201 : 500);
        if (rc == 0)
            sn_pack_kv_str (pack, "key", keys[index]);
        zmq_msg_send (&envelopes[index], handle, ZMQ_SNDMORE);
        zmq_send (handle, sn_pack_data (pack), sn_pack_size (pack), 0);
        zmq_msg_close (&envelopes[index]);
        zmq_msg_close (&bodies[index]);
    }
    free (keys);
    if (rc)
        fprintf (stderr, "sn_bench: store-server: %s\n", mdb_strerror (rc));
    return rc ? -1 : 0;
}

static int
s_store_server (const char *endpoint, const char *dir)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi = 0;
    int rc = mdb_env_create (&env);
    if (rc == 0)
        rc = mdb_env_set_mapsize (env, (size_t) 8 << 30);
    if (rc == 0)
        rc = mdb_env_open (env, dir, MDB_NOTLS, 0644);
    if (rc == 0)
        rc = mdb_txn_begin (env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open (txn, NULL, 0, &dbi);
    if (rc == 0)
        rc = mdb_txn_commit (txn);
    else if (txn)
        mdb_txn_abort (txn);
    if (rc)
        fprintf (stderr, "sn_bench: store-server: %s\n", mdb_strerror (rc));
    zsock_t *router = rc ? NULL : s_server_router (endpoint);
    if (!router) {
        mdb_env_close (env);
        return 1;
    }
    void *handle = zsock_resolve (router);
    zmq_msg_t *envelopes = (zmq_msg_t *) malloc (S_STORE_BATCH * sizeof (zmq_msg_t));
    zmq_msg_t *bodies = (zmq_msg_t *) malloc (S_STORE_BATCH * sizeof (zmq_msg_t));
    assert (envelopes && bodies);
    sn_pack_t *pack = sn_pack_new ();
    uint64_t counter = 0;
    int status = 0;
    zmq_pollitem_t item = {handle, 0, ZMQ_POLLIN, 0};
    while (!zsys_interrupted && status == 0) {
        if (zmq_poll (&item, 1, 100) <= 0)
            continue;
        //  The bench's DEALER sends one frame a put: [envelope, body] here
        size_t count = 0;
        while (count < S_STORE_BATCH) {
            zmq_msg_init (&envelopes[count]);
            if (zmq_msg_recv (&envelopes[count], handle, ZMQ_DONTWAIT) == -1) {
                zmq_msg_close (&envelopes[count]);
                break;
            }
            zmq_msg_init (&bodies[count]);
            zmq_msg_recv (&bodies[count], handle, 0);
            count++;
        }
        if (count)
            status = s_store_commit (env, dbi, handle, envelopes, bodies, count, &counter, pack);
    }
    sn_pack_destroy (&pack);
    free (envelopes);
    free (bodies);
    zsock_destroy (&router);
    mdb_env_close (env);
    return status ? 1 : 0;
}

//  Ports are held open until all are chosen, so the N printed are distinct. They come
//  from below the kernel's ephemeral range: a bind(0) port can be taken by an outgoing
//  connection (the nodes' own peer links among them) before the node binds it.
static int
s_free_ports (int count)
{
    int fds[16];
    if (count < 1 || count > 16)
        return 1;
    srandom ((unsigned) getpid () ^ (unsigned) time (NULL));
    int chosen = 0;
    for (int tries = 0; chosen < count && tries < 10000; tries++) {
        int port = 20000 + (int) (random () % 12000);
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        if (fd == -1) {
            perror ("sn_bench: free-port");
            return 1;
        }
        struct sockaddr_in address = {.sin_family = AF_INET,
                                      .sin_port = htons ((uint16_t) port),
                                      .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
        if (bind (fd, (struct sockaddr *) &address, sizeof (address)) == -1) {
            close (fd);
            continue;
        }
        fds[chosen++] = fd;
        printf ("%d\n", port);
    }
    for (int i = 0; i < chosen; i++)
        close (fds[i]);
    return chosen == count ? 0 : 1;
}

static int
s_usage (void)
{
    fprintf (stderr, "usage: sn_bench free-port [N]\n"
                     "       sn_bench echo-server ENDPOINT\n"
                     "       sn_bench store-server ENDPOINT DIR\n"
                     "       sn_bench put ENDPOINT SECONDS WINDOW SIZE\n"
                     "       sn_bench bulk ENDPOINT SECONDS WINDOW SIZE BATCH\n"
                     "       sn_bench rtt ENDPOINT SECONDS WINDOW SIZE [BATCH]\n"
                     "       sn_bench enqueue ENDPOINT SECONDS WINDOW SIZE\n"
                     "       sn_bench e2e ENDPOINT COUNT WINDOW SIZE\n"
                     "       sn_bench rtt-count ENDPOINT COUNT WINDOW SIZE\n"
                     "       sn_bench beanstalk|redis HOST:PORT SECONDS WINDOW SIZE\n");
    return 2;
}

int
main (int argc, char *argv[])
{
    if (argc >= 2 && streq (argv[1], "free-port"))
        return s_free_ports (argc >= 3 ? atoi (argv[2]) : 1);
    if (argc == 3 && streq (argv[1], "echo-server"))
        return s_echo_server (argv[2]);
    if (argc == 4 && streq (argv[1], "store-server"))
        return s_store_server (argv[2], argv[3]);
    if (argc < 6)
        return s_usage ();
    if ((streq (argv[1], "beanstalk") || streq (argv[1], "redis")) && argc == 6) {
        s_text_load_t text = {.redis = streq (argv[1], "redis"), .address = argv[2]};
        text.seconds = atof (argv[3]);
        text.window = (uint32_t) atoi (argv[4]);
        text.size = (size_t) atoi (argv[5]);
        if (text.seconds <= 0 || text.window < 1 || text.size < 1 || text.size > 60000)
            return s_usage ();
        return s_text_load (&text);
    }

    s_load_t load = {0};
    if (streq (argv[1], "put") && argc == 6)
        load.mode = S_PUT;
    else if (streq (argv[1], "bulk") && argc == 7)
        load.mode = S_BULK;
    else if (streq (argv[1], "rtt") && (argc == 6 || argc == 7))
        load.mode = S_RTT;
    else if (streq (argv[1], "enqueue") && argc == 6)
        load.mode = S_ENQUEUE;
    else if (streq (argv[1], "e2e") && argc == 6)
        load.mode = S_ENQUEUE;
    else if (streq (argv[1], "rtt-count") && argc == 6)
        load.mode = S_RTT;
    else
        return s_usage ();
    load.enqueue = load.mode == S_ENQUEUE || streq (argv[1], "rtt-count");
    bool counted = streq (argv[1], "e2e") || streq (argv[1], "rtt-count");
    if (counted) {
        //  A count instead of seconds; the seconds bound how long it may take
        int64_t count = atoll (argv[3]);
        if (count < 1 || count > 10000000)
            return s_usage ();
        load.limit = (uint64_t) count;
        load.seconds = S_COUNTED_SECONDS;
        load.window = (uint32_t) atoi (argv[4]);
        load.size = (size_t) atoi (argv[5]);
        if (load.window < 1 || load.size < 1 || load.size > 60000)
            return s_usage ();
        load.endpoint = argv[2];
        return streq (argv[1], "e2e") ? s_e2e (&load) : s_load (&load);
    }
    load.endpoint = argv[2];
    load.seconds = atof (argv[3]);
    load.window = (uint32_t) atoi (argv[4]);
    load.size = (size_t) atoi (argv[5]);
    load.batch = argc == 7 ? (uint32_t) atoi (argv[6]) : 0;
    if (load.seconds <= 0 || load.window < 1 || load.size < 1 || load.size > 60000 ||
        (argc == 7 && (load.batch < 1 || load.batch > 1000)))
        return s_usage ();
    return s_load (&load);
}
