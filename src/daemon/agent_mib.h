/*
 * NUMPROV-MIB inside the agent: the only header that includes net-snmp. The
 * OID arc is defined here once (NUMPROV_MIB_OID) and once in the MIB text.
 * The unit tests (tests/unit/check_snmp.c) call the handlers through it,
 * without snmpd.
 */
#ifndef NUMPROV_AGENT_MIB_H
#define NUMPROV_AGENT_MIB_H

#include <net-snmp/net-snmp-config.h>
#include <net-snmp/net-snmp-includes.h>
#include <net-snmp/agent/net-snmp-agent-includes.h>
#include <net-snmp/agent/agent_callbacks.h>
#include <net-snmp/agent/agent_sysORTable.h>
#include <net-snmp/library/large_fd_set.h>
#undef FREE /* net-snmp's write phase, not a function */

#include "agent.h"

/* netSnmpPlaypen (netSnmpExperimental.9999).6867: numprovMIB, until an IANA enterprise number is
 * obtained */
#define NUMPROV_MIB_OID 1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 6867
#define NUMPROV_MIB_LEN 10

/* numprovObjects (1): numprovSync (1), numprovStats (2), numprovRangeTable (3) */
enum agent_sync_scalar {
	AS_STATE = 1,
	AS_LAST_RESULT,
	AS_LAST_START,
	AS_LAST_END,
	AS_LAST_DURATION,
	AS_LAST_ERROR,
	AS_NEXT_IN,
	AS_COUNT,
	AS_FAILURES,
	AS_TRIGGER,
	AS_LAST_FULL,
};
enum agent_stats_scalar {
	AT_USERS_TRACKED = 1,
	AT_USERS_PENDING,
	AT_USERS_UNMATCHED,
	AT_ASSIGNMENTS,
	AT_RELEASES,
	AT_ASSIGN_FAILURES,
	AT_DRIFT,
	AT_START_TIME,
};
enum agent_range_column {
	AR_INDEX = 1,
	AR_NAME,
	AR_TYPE,
	AR_PROVIDER,
	AR_FIRST,
	AR_LAST,
	AR_SIZE,
	AR_ASSIGNED,
	AR_PENDING,
	AR_AVAILABLE,
	AR_RESERVED,
	AR_QUARANTINED,
	AR_UTILISATION,
	AR_WARN_PERCENT,
	AR_STATUS,
};
/* numprovNotifications (0) */
enum agent_notification {
	AN_RANGE_HIGH = 1,
	AN_RANGE_EXHAUSTED,
	AN_SYNC_FAILED,
	AN_SYNC_RECOVERED,
};

/* One value, as GET answers it and as a notification carries it. */
struct agent_value {
	u_char type;
	size_t len;
	union {
		long integer;
		u_long gauge;
		u_char octets[256];
	} v;
};

struct range_view;
/* The value of a column of a row / a scalar; 0, or -1 for no such object. */
int agent_range_value(const struct range_view *v, int column, struct agent_value *out);
int agent_scalar_value(struct agent *a, int group, int which, struct agent_value *out);

/*
 * The registered variables, strictly increasing, and the dispatcher the tests
 * use in place of snmpd: GET (exact) or GETNEXT of name; on success name and
 * *len hold the answered instance. The handlers are net-snmp FindVarMethods.
 */
extern struct variable4 agent_vars[];
extern const size_t agent_nvars;
extern const oid agent_mib_oid[NUMPROV_MIB_LEN];
const u_char *agent_lookup(struct agent *a, oid *name, size_t *len, int exact,
    struct agent_value *out, WriteMethod **write);
/* An agent that serves the source without net-snmp's session (unit tests). */
struct agent *agent_new_detached(struct config *cfg, const struct agent_source *src);
/* The varbinds of a notification (snmpTrapOID.0 first); NULL when it cannot be built. */
netsnmp_variable_list *agent_notification_vars(
    struct agent *a, enum agent_notification which, const char *range);
/* The numprovSyncTrigger write handler. */
WriteMethod agent_write_trigger;

#endif
