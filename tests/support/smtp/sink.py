#!/usr/bin/env python3
"""A tiny SMTP sink for certgate's notice tests (standard library only).

Listens on 127.0.0.1, speaks enough SMTP for a client like lettre (EHLO/HELO, MAIL, RCPT,
DATA, RSET, NOOP, QUIT) and writes each accepted message to DIR as NNNNNN.json:
{"mail_from", "rcpt_to", "subject", "body", "raw"} with subject and body decoded.

Recipients whose local part starts with "reject" get 550 (permanent), with "defer" 451
(temporary). Prints "PORT <n>" on stdout once listening.

usage: sink.py --dir DIR [--port N]
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import sys


class Session:
    def __init__(self, reader, writer, out_dir, counter):
        self.r = reader
        self.w = writer
        self.out_dir = out_dir
        self.counter = counter
        self.reset()

    def reset(self):
        self.mail_from = None
        self.rcpt_to = []

    async def reply(self, line):
        self.w.write(line.encode() + b"\r\n")
        await self.w.drain()

    async def run(self):
        await self.reply("220 sink ESMTP ready")
        while True:
            line = await self.r.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = text[:4].upper()
            arg = text[4:].strip()
            if verb == "EHLO":
                self.reset()
                await self.reply("250-sink greets " + arg)
                await self.reply("250-8BITMIME")
                await self.reply("250 SMTPUTF8")
            elif verb == "HELO":
                self.reset()
                await self.reply("250 sink")
            elif verb == "MAIL":
                self.reset()
                self.mail_from = address(arg)
                await self.reply("250 sender ok")
            elif verb == "RCPT":
                if self.mail_from is None:
                    await self.reply("503 MAIL first")
                    continue
                rcpt = address(arg)
                local = rcpt.split("@", 1)[0].lower()
                if local.startswith("reject"):
                    await self.reply("550 5.1.1 no such user here")
                elif local.startswith("defer"):
                    await self.reply("451 4.3.0 try again later")
                else:
                    self.rcpt_to.append(rcpt)
                    await self.reply("250 recipient ok")
            elif verb == "DATA":
                if not self.rcpt_to:
                    await self.reply("503 no valid recipients")
                    continue
                await self.reply("354 end with <CRLF>.<CRLF>")
                raw = await self.read_data()
                if raw is None:
                    return
                self.store(raw)
                self.reset()
                await self.reply("250 queued")
            elif verb == "RSET":
                self.reset()
                await self.reply("250 ok")
            elif verb == "NOOP":
                await self.reply("250 ok")
            elif verb == "QUIT":
                await self.reply("221 bye")
                return
            else:
                await self.reply("502 command not implemented")

    async def read_data(self):
        lines = []
        while True:
            line = await self.r.readline()
            if not line:
                return None
            if line in (b".\r\n", b".\n"):
                return b"".join(lines)
            if line.startswith(b".."):
                line = line[1:]
            lines.append(line)

    def store(self, raw):
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body_part = msg.get_body(preferencelist=("plain",))
        record = {
            "mail_from": self.mail_from,
            "rcpt_to": self.rcpt_to,
            "subject": str(msg.get("subject", "")),
            "body": body_part.get_content() if body_part is not None else "",
            "raw": raw.decode("utf-8", "replace"),
        }
        self.counter[0] += 1
        name = "%06d-%d" % (self.counter[0], os.getpid())
        tmp = os.path.join(self.out_dir, "." + name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
        os.rename(tmp, os.path.join(self.out_dir, name + ".json"))


def address(arg):
    # "FROM:<a@b> SIZE=1" or "TO:<a@b>"
    start = arg.find("<")
    end = arg.find(">", start + 1)
    if start >= 0 and end > start:
        return arg[start + 1 : end]
    return arg.split(":", 1)[-1].strip()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    counter = [len([n for n in os.listdir(a.dir) if n.endswith(".json")])]

    async def handle(reader, writer):
        try:
            await Session(reader, writer, a.dir, counter).run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", a.port, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    print("PORT %d" % port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
