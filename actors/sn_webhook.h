/*  sn_webhook: the webhook actor. Every outbound HTTP request of the node goes here.

    One libcurl multi handle runs every POST at once inside the actor's loop, so a
    slow receiver delays nobody else. TLS peers are verified unless the config says
    otherwise; every request has a timeout; only http and https are spoken; a
    destination must pass the allow and deny lists before a connection is tried.

    Op (on its inproc ROUTER, from other actors only):
      post {rid, url, body, headers?: [string], timeout?: ms}
           -> 200 {rid, status, body}   the receiver's HTTP status and (capped) body
           -> 200 {rid, status: 0, error, kind}  no HTTP answer: kind is "refused",
              "timeout", "denied" or "error"
    The reply code is 200 whenever the request was tried; status says how it went.

    Pipe commands: "START" (replies "OK" or the error text), "$TERM".
*/
#ifndef SN_WEBHOOK_H_INCLUDED
#define SN_WEBHOOK_H_INCLUDED

#include <czmq.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Most bytes of a receiver's answer kept; the rest is read and dropped.
#define SN_WEBHOOK_BODY_MAX (64 * 1024)

typedef struct {
    const char *endpoint; //  inproc endpoint the actor binds its ROUTER to
    const char *allow;    //  hosts allowed, comma-separated ("*" or NULL: any)
    const char *deny;     //  hosts refused, comma-separated, checked first (NULL: none)
    bool insecure;        //  skip TLS verification (tests with self-signed receivers)
    bool verbose;         //  log every request
} sn_webhook_config_t;

zactor_t *sn_webhook_new (const sn_webhook_config_t *config, char *error, size_t size);
void sn_webhook_actor (zsock_t *pipe, void *args);

//  True when host passes the lists: not in deny, and in allow (or allow is "*"
//  or NULL). Entries match a whole host name, or its end when they start with
//  "." (".example.com").
bool sn_webhook_allowed (const char *allow, const char *deny, const char *host);

void sn_webhook_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
