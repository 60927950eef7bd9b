"""Background jobs: submit, get a handle back at once, poll the status."""
import gearman_gevent as gg
from _common import parser, servers

p = parser(__doc__)
p.add_argument("--count", type=int, default=3)
args = p.parse_args()

with gg.Client(servers(args)) as client:
    tasks = [client.submit("reverse_string", f"background {i}", background=True, unique="")
             for i in range(args.count)]
    for task in tasks:
        # once submit() returned, the job is in the server
        print(task.handle.decode(), client.get_status(task))
