/*  sn_metrics: the node's numbers in the Prometheus text exposition format (0.0.4).

    The gateway asks the node's actors for what they know (the mesh's cluster, the
    store's health, queue.stats, batch.stats, dispatch.stats), hands each reply here
    as JSON (or NULL when that source did not answer), and serves the text. A source
    that failed leaves its metrics out and sets supernode_scrape_errors{source} to 1;
    the others are still rendered. Every metric has # HELP and # TYPE lines, names
    start with supernode_, counters end in _total, and labels take values from small
    fixed sets only.
*/
#ifndef SN_METRICS_H_INCLUDED
#define SN_METRICS_H_INCLUDED

#include <czmq.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

//  The Content-Type of the text
#define SN_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct _sn_metrics_t sn_metrics_t;

sn_metrics_t *sn_metrics_new (void);
void sn_metrics_destroy (sn_metrics_t **self_p);

//  The sources, in the order they are asked and rendered: the op to send each
//  one, NULL after the last.
const char *sn_metrics_source (size_t index);
const char *sn_metrics_source_op (size_t index);

//  Takes the reply of source (its members but rid and code), or NULL when the
//  source did not answer or refused. Takes ownership of reply. Returns 0, or -1
//  for an unknown source.
int sn_metrics_set (sn_metrics_t *self, const char *source, json_t *reply);

//  The text of every metric the replies give. The caller frees it. NULL when out
//  of memory.
char *sn_metrics_render (sn_metrics_t *self);

void sn_metrics_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
