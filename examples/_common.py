"""Shared by the examples: where the job server is.

Every example takes the server list from ``--servers`` or the environment
variable ``GEARMAN_SERVERS`` (comma-separated), else ``localhost:4730``.
"""
import argparse
import os


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--servers", default=os.environ.get("GEARMAN_SERVERS", "localhost:4730"),
                   help="job servers, comma-separated (default: $GEARMAN_SERVERS or localhost:4730)")
    return p


def servers(args):
    return [s for s in args.servers.split(",") if s]
