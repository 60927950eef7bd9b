"""Submit a reverse_string task and wait for it with a timeout
(gearman-ruby's examples/client_reverse_wait.rb)."""
import gearman_gevent as gg
from _common import parser, servers

p = parser(__doc__)
p.add_argument("text", nargs="?", default="Hello World")
args = p.parse_args()

client = gg.Client(servers(args))
task = gg.Task("reverse_string", args.text)
task.on_complete(lambda result: print("result:", result.decode()))
task.on_fail(lambda: print("the job failed"))
client.submit_task(task)
if not task.wait(timeout=10):
    print("no result within 10 s")
client.close()
