/*
 * The SNMP AgentX subagent serving NUMPROV-MIB (mibs/NUMPROV-MIB.txt) from
 * memory: the monitor's range views and the cycle's statistics. It runs on
 * the daemon's event loop (net-snmp's descriptors and timeout are synced into
 * libevent after every turn of net-snmp, which never gets a loop of its own
 * or SIGALRM), reconnects by itself when snmpd comes back, and turns the
 * monitor's alarm events into notifications. net-snmp keeps global state:
 * there is one agent per process, started once; enabled and agentx_socket
 * take effect at start, traps at every reload.
 */
#ifndef NUMPROV_AGENT_H
#define NUMPROV_AGENT_H

struct config;
struct event_base;
struct monitor;
struct prov_stats;

/* What the agent reads and what a SET of numprovSyncTrigger does. */
struct agent_source {
	struct monitor *mon;
	void (*stats)(void *arg, struct prov_stats *out);
	void (*trigger)(void *arg, int full);
	void *arg;
};

struct agent;

/* NULL with err filled when net-snmp cannot be set up (not for a missing snmpd). */
struct agent *agent_new(struct event_base *base, struct config *cfg, const struct agent_source *src,
    char *err, size_t errlen);
void agent_free(struct agent *a);
void agent_set_config(struct agent *a, struct config *cfg);
int agent_connected(const struct agent *a);
/* The AgentX socket net-snmp was given at start (a reload does not change it). */
const char *agent_socket(const struct agent *a);
/* The agent's counters of notifications sent, for status. */
unsigned long agent_notifications(const struct agent *a);

#endif
