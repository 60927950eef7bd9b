"""A minimal raw-socket Gearman worker for client tests.

It speaks the protocol with blocking gevent sockets and the library's codec
only, so client tests do not depend on the library's Worker.  ``handler(job)``
gets a :class:`RawJob` and returns bytes (WORK_COMPLETE), None (WORK_FAIL), or
raises (WORK_EXCEPTION); it may call ``job.send(name, *args)`` for WORK_DATA,
WORK_STATUS, WORK_WARNING.  Each job runs in its own greenlet.
"""
from __future__ import annotations

import socket

import gevent
import gevent.socket
from gevent.lock import Semaphore

from gearman_gevent.packet import NUMS, RES, Decoder, pack_request


class RawJob:
    def __init__(self, worker, handle, func, unique, data):
        self.worker = worker
        self.handle = handle
        self.func = func
        self.unique = unique
        self.data = data

    def send(self, name, *args):
        self.worker._send(pack_request(name, self.handle, *args))


class RawWorker:
    def __init__(self, address, functions, handler, concurrency=10):
        host, port = address.rsplit(":", 1)
        self.sock = gevent.socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = Decoder(RES)
        self.lock = Semaphore()
        self.handler = handler
        self.jobs_done = 0
        self.slots = Semaphore(concurrency)
        for f in functions:
            self._send(pack_request("can_do", f))
        self.greenlet = gevent.spawn(self._run)

    def _send(self, data):
        with self.lock:
            self.sock.sendall(data)

    def _next(self):
        while True:
            while self._pending:
                return self._pending.pop(0)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self._pending.extend(self.decoder.feed(data))

    def _run(self):
        self._pending = []
        try:
            while True:
                self.slots.acquire()
                self._send(pack_request("grab_job_uniq"))
                pkt = self._next()
                while pkt.type == NUMS["noop"]:
                    pkt = self._next()
                if pkt.type == NUMS["no_job"]:
                    self.slots.release()
                    self._send(pack_request("pre_sleep"))
                    pkt = self._next()  # NOOP
                    continue
                handle, func, unique, data = pkt.args
                gevent.spawn(self._job, RawJob(self, handle, func, unique, data))
        except (EOFError, OSError, gevent.GreenletExit):
            pass

    def _job(self, job):
        try:
            try:
                result = self.handler(job)
            except Exception as exc:
                job.send("work_exception", str(exc))
            else:
                if result is None:
                    job.send("work_fail")
                else:
                    job.send("work_complete", result)
            self.jobs_done += 1
        finally:
            self.slots.release()

    def close(self):
        self.greenlet.kill()
        self.sock.close()
