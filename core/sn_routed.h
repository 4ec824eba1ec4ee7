/*  sn_routed: one routed message, [envelope frames..., payload], held as zmq_msg_t.

    Every request inside a node arrives through a ROUTER as an envelope (identities,
    perhaps an empty delimiter) then one payload frame, and its reply must leave with
    the same envelope. Holding the frames as zmq_msg_t in a fixed array lets an actor
    pass a request on, or answer it, without allocating anything: libzmq moves the
    frames' contents instead of copying them.

    A message with more envelope frames than SN_ROUTED_MAX - 1 keeps its first frame
    (the identity that routes the reply) and its payload, and is marked overflowed.
*/
#ifndef SN_ROUTED_H_INCLUDED
#define SN_ROUTED_H_INCLUDED

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Most frames held: envelope frames plus the payload.
#define SN_ROUTED_MAX 10

typedef struct {
    zmq_msg_t frames[SN_ROUTED_MAX]; //  envelope..., payload (the last one)
    size_t count;                    //  frames held
    bool overflowed;                 //  more envelope frames came than were kept
} sn_routed_t;

//  Receive one whole message from socket without waiting. Returns 0, or -1 when
//  none is waiting (or a message had no payload, which is dropped).
int sn_routed_recv (sn_routed_t *self, zsock_t *socket);

//  The payload's bytes and size.
const byte *sn_routed_data (sn_routed_t *self);
size_t sn_routed_size (sn_routed_t *self);

//  Send every frame to socket without waiting. Returns 0, and the message is empty;
//  or -1 when the socket would have blocked, and the message is kept whole, to be
//  answered or closed by the caller.
int sn_routed_send (sn_routed_t *self, zsock_t *socket);

//  Replace the payload with a copy of data, keeping the envelope.
void sn_routed_set_payload (sn_routed_t *self, const void *data, size_t size);

//  Move every frame of source into self (which must be empty); source ends empty.
//  For keeping a request while its answer is prepared elsewhere.
void sn_routed_move (sn_routed_t *self, sn_routed_t *source);

//  Release every frame; safe on an empty message.
void sn_routed_close (sn_routed_t *self);

void sn_routed_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
