/*  sn_actor: starting an actor whose start can fail.

    Every supernode actor follows one pattern: it signals its pipe as soon as it
    runs, then does the work that can fail (opening files, binding endpoints) when
    it receives "START", and answers "OK" or the reason it failed.
*/
#ifndef SN_ACTOR_H_INCLUDED
#define SN_ACTOR_H_INCLUDED

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Create the actor, send it START and wait for its answer. Returns the running
//  actor, or NULL with the actor's reason (or "NAME did not start") in error, after
//  destroying it.
zactor_t *sn_actor_start (zactor_fn *actor, void *args, const char *name, char *error, size_t size);

//  For tests: send command and read the actor's answer as a decimal count.
uint64_t sn_actor_count (zactor_t *actor, const char *command);

//  For tests: ask command again (every 10 ms) until its count passes count, for at
//  most timeout ms (then the test fails). Returns the count that did.
uint64_t sn_actor_count_past (zactor_t *actor, const char *command, uint64_t count, int timeout);

void sn_actor_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
