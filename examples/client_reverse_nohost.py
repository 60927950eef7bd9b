"""Reverse a string with a Client built without servers: it talks to
localhost:4730 (gearman-ruby's examples/client_reverse_nohost.rb).
With --servers the given servers are used instead."""
import sys

import gearman_gevent as gg
from _common import parser

p = parser(__doc__)
p.add_argument("text", nargs="?", default="Hello World")
args = p.parse_args()

client = gg.Client() if "--servers" not in sys.argv else gg.Client(args.servers.split(","))
print(client.do("reverse_string", args.text, timeout=10).decode())
client.close()
