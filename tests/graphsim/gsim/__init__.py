"""graphsim internals: one module per concern.

server     HTTPS transport (ThreadingHTTPServer + TLS, keep-alive, connection reset)
simulator  the Simulator object: state behind one lock, per-request pipeline
routes     URL routing for the token endpoint and Graph
auth       token endpoint, client secret / JWT assertion checks, bearer tokens
rsa        pure-Python RSASSA-PSS / PKCS#1 v1.5 SHA-256 verification
certs      the registered application certificate (via the openssl CLI)
tenant     users (change sequence numbers), inventory, SKUs, policies, locations
licensing  what assignedPlans mean to Teams; licence propagation delay
delta      /users/delta rounds, paging and tokens
directory  /users, /users/{id}, /subscribedSkus
inventory  telephone number normalisation and numberAssignment records
numbers    numberAssignments list, assignNumber/unassignNumber, operations
teams      userConfigurations and policy endpoints
faults     fault queue, latency, seeded random mode
reqlog     request log and in-flight high-water mark
control    the /_sim/ control interface
errors     Graph and Entra error bodies
util       time, ids, base64url, JSON responses
"""
