/*  sn_routed: one routed message, [envelope frames..., payload], held as zmq_msg_t.
 */
#include "sn_routed.h"

int
sn_routed_recv (sn_routed_t *self, zsock_t *socket)
{
    assert (self);
    void *handle = zsock_resolve (socket);
    self->count = 0;
    self->overflowed = false;
    bool more = true;
    for (int flags = ZMQ_DONTWAIT; more; flags = 0) {
        //  Past the limit, the frame before the payload is read over and over, so
        //  that the identity and the payload are what remain.
        size_t slot = self->count < SN_ROUTED_MAX ? self->count : SN_ROUTED_MAX - 1;
        if (self->count == SN_ROUTED_MAX) {
            zmq_msg_close (&self->frames[slot]);
            self->overflowed = true;
        }
        zmq_msg_init (&self->frames[slot]);
        if (zmq_msg_recv (&self->frames[slot], handle, flags) == -1) {
            zmq_msg_close (&self->frames[slot]);
            sn_routed_close (self);
            return -1;
        }
        more = zmq_msg_more (&self->frames[slot]);
        if (self->count < SN_ROUTED_MAX)
            self->count++;
    }
    if (self->count < 2) {
        sn_routed_close (self);
        return -1;
    }
    return 0;
}

const byte *
sn_routed_data (sn_routed_t *self)
{
    assert (self && self->count > 0);
    return (const byte *) zmq_msg_data (&self->frames[self->count - 1]);
}

size_t
sn_routed_size (sn_routed_t *self)
{
    assert (self && self->count > 0);
    return zmq_msg_size (&self->frames[self->count - 1]);
}

int
sn_routed_send (sn_routed_t *self, zsock_t *socket)
{
    assert (self);
    void *handle = zsock_resolve (socket);
    int rc = 0;
    //  An overflowed envelope is cut to its identity: the frames between were
    //  not all kept, and a reply needs only the identity to find its way.
    if (self->overflowed && self->count > 2) {
        zmq_msg_move (&self->frames[1], &self->frames[self->count - 1]);
        for (size_t index = 2; index < self->count; index++)
            zmq_msg_close (&self->frames[index]);
        self->count = 2;
    }
    for (size_t sent = 0; sent < self->count; sent++) {
        int flags = ZMQ_DONTWAIT | (sent + 1 < self->count ? ZMQ_SNDMORE : 0);
        if (zmq_msg_send (&self->frames[sent], handle, flags) == -1) {
            //  ZeroMQ queues a message whole or not at all: only the first frame
            //  can fail, and then the message is still all here.
            if (sent == 0)
                return -1;
            rc = -1;
            break;
        }
    }
    //  A sent frame is empty again; what was not sent is released here.
    for (size_t index = 0; index < self->count; index++)
        zmq_msg_close (&self->frames[index]);
    self->count = 0;
    return rc;
}

void
sn_routed_set_payload (sn_routed_t *self, const void *data, size_t size)
{
    assert (self && self->count > 0);
    zmq_msg_t *payload = &self->frames[self->count - 1];
    zmq_msg_close (payload);
    zmq_msg_init_size (payload, size);
    memcpy (zmq_msg_data (payload), data, size);
}

void
sn_routed_move (sn_routed_t *self, sn_routed_t *source)
{
    assert (self && source);
    for (size_t index = 0; index < source->count; index++) {
        zmq_msg_init (&self->frames[index]);
        zmq_msg_move (&self->frames[index], &source->frames[index]);
        zmq_msg_close (&source->frames[index]);
    }
    self->count = source->count;
    self->overflowed = source->overflowed;
    source->count = 0;
}

void
sn_routed_close (sn_routed_t *self)
{
    assert (self);
    for (size_t index = 0; index < self->count; index++)
        zmq_msg_close (&self->frames[index]);
    self->count = 0;
}

void
sn_routed_test (bool verbose)
{
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://sn-routed-test-%d", getpid ());
    zsock_t *router = zsock_new_router (endpoint);
    zsock_t *dealer = zsock_new_dealer (endpoint);
    zpoller_t *poller = zpoller_new (router, NULL);
    sn_routed_t message;

    //  Nothing waiting: returns at once
    assert (sn_routed_recv (&message, router) == -1);

    //  A request comes in with its identity; the reply goes back with it
    zstr_sendm (dealer, "");
    zstr_send (dealer, "request");
    assert (zpoller_wait (poller, 5000) == router);
    assert (sn_routed_recv (&message, router) == 0);
    assert (message.count == 3 && !message.overflowed);
    assert (sn_routed_size (&message) == 7);
    assert (memcmp (sn_routed_data (&message), "request", 7) == 0);
    //  A request kept aside moves whole, and the reply still finds its way
    sn_routed_t kept;
    sn_routed_move (&kept, &message);
    assert (message.count == 0 && kept.count == 3);
    sn_routed_close (&message);
    sn_routed_set_payload (&kept, "reply", 5);
    assert (sn_routed_send (&kept, router) == 0);
    assert (message.count == 0);
    char *delimiter, *reply;
    assert (zstr_recvx (dealer, &delimiter, &reply, NULL) == 2);
    assert (streq (delimiter, "") && streq (reply, "reply"));
    zstr_free (&delimiter);
    zstr_free (&reply);

    //  Too many envelope frames: identity and payload are kept, the reply arrives
    for (int frame = 0; frame < 30; frame++)
        zstr_sendm (dealer, "x");
    zstr_send (dealer, "last");
    assert (zpoller_wait (poller, 5000) == router);
    assert (sn_routed_recv (&message, router) == 0);
    assert (message.overflowed);
    assert (sn_routed_size (&message) == 4);
    assert (memcmp (sn_routed_data (&message), "last", 4) == 0);
    sn_routed_set_payload (&message, "cut", 3);
    assert (sn_routed_send (&message, router) == 0);
    reply = zstr_recv (dealer);
    assert (streq (reply, "cut"));
    zstr_free (&reply);

    //  A message with only a payload has nothing to route a reply by: dropped
    zsock_t *pull = zsock_new_pull ("inproc://sn-routed-test-pull");
    zsock_t *push = zsock_new_push ("inproc://sn-routed-test-pull");
    zstr_send (push, "alone");
    zpoller_t *pull_poller = zpoller_new (pull, NULL);
    assert (zpoller_wait (pull_poller, 5000) == pull);
    assert (sn_routed_recv (&message, pull) == -1);
    assert (message.count == 0);
    sn_routed_close (&message);
    if (verbose)
        zsys_info ("sn_routed: all checks passed");
    zpoller_destroy (&pull_poller);
    zsock_destroy (&push);
    zsock_destroy (&pull);
    zpoller_destroy (&poller);
    zsock_destroy (&dealer);
    zsock_destroy (&router);
}
