#!/usr/bin/python3
"""graphsim: a local Microsoft Graph + Entra ID token endpoint simulator for numprov.

  /usr/bin/python3 tests/graphsim/graphsim.py --cert server.pem --key server.key \\
      [--port 0] [--port-file FILE] [--fixture FILE] [--app-cert FILE] \\
      [--page-size N] [--op-polls N] [--assign-existing refuse|replace] [--seed N] [--log FILE]

Serves HTTPS on 127.0.0.1; login_url = graph_url = https://127.0.0.1:PORT.
The control interface lives under /_sim/ (see README.md and simctl.py)."""
import argparse
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gsim.server import Server, make_ssl_context  # noqa: E402
from gsim.simulator import Simulator  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cert", required=True, help="server certificate (PEM)")
    p.add_argument("--key", required=True, help="server private key (PEM)")
    p.add_argument("--port", type=int, default=0, help="TCP port, 0 = any free one")
    p.add_argument("--port-file", help="write the port number here once listening")
    p.add_argument("--fixture", help="tenant fixture (JSON) to load at start")
    p.add_argument("--app-cert", help="application certificate (overrides the fixture's)")
    p.add_argument("--page-size", type=int, default=100, help="users per delta page")
    p.add_argument("--op-polls", type=int, default=2,
                   help="polls an operation answers 'running' before its final status")
    p.add_argument("--assign-existing", choices=("refuse", "replace"), default="refuse",
                   help="assignNumber for a user who already holds a number: refuse it "
                        "(default) or replace the user's number")
    p.add_argument("--token-lifetime", type=int, default=3599, help="access token expires_in")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault PRNG")
    p.add_argument("--log", help="append one JSON line per request to this file")
    return p.parse_args(argv)


def write_port_file(path, port):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    sim = Simulator({"page_size": args.page_size, "op_polls": args.op_polls,
                     "token_lifetime": args.token_lifetime,
                     "assign_existing": args.assign_existing},
                    seed=args.seed, log_path=args.log, app_cert=args.app_cert)
    if args.fixture:
        sim.load_fixture_file(args.fixture)
    server = Server(("127.0.0.1", args.port), sim, make_ssl_context(args.cert, args.key))
    sim.port = server.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, sim.port)
    print(f"graphsim listening on https://127.0.0.1:{sim.port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
