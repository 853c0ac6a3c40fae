/*
 * The small world the SNMP handler tests and the fuzz harness serve: three
 * ranges, one of each type. "a" has a reservation in the configuration, "b"
 * reaches its warning level with two numbers, "c" has four numbers. The
 * format takes the directory of the inventory.
 */
#ifndef NUMPROV_SNMP_WORLD_H
#define NUMPROV_SNMP_WORLD_H

#define SNMP_WORLD_CONF                                                                            \
	"tenant: { id = \"t\"; client_id = \"11111111-2222-3333-4444-555555555555\";\n"            \
	"  client_secret_file = \"/s\"; };\n"                                                      \
	"database: { path = \"%s/db\"; durable = false; };\n"                                      \
	"ranges = (\n"                                                                             \
	"{ name = \"a\"; type = \"direct-routing\"; provider = \"Gamma\";\n"                       \
	"  first = \"+441235000000\"; last = \"+441235000099\"; warn_percent = 50;\n"              \
	"  reserved = [ \"+441235000000\" ]; },\n"                                                 \
	"{ name = \"b\"; type = \"calling-plan\"; provider = \"Microsoft\";\n"                     \
	"  first = \"+442071230000\"; last = \"+442071230009\"; warn_percent = 20; },\n"           \
	"{ name = \"c\"; type = \"operator-connect\";\n"                                           \
	"  first = \"+441612000000\"; last = \"+441612000003\"; });\n"

#endif
