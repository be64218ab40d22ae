#!/usr/bin/env python3
"""A tiny SMTP sink for certgate's notice tests (standard library only).

Listens on 127.0.0.1, speaks enough SMTP for a client like lettre (EHLO/HELO, MAIL, RCPT,
DATA, RSET, NOOP, QUIT; PIPELINING offered, so a client may send MAIL, RCPT and DATA at once)
and appends each accepted message, before answering 250, as one JSON line to DIR/NNNNNN-PID.jsonl
(NNNNNN: the files already there, so names sort in order of the sink's starts):
{"mail_from", "rcpt_to", "subject", "body", "message_id", "raw", "tls", "auth_user"} with
subject and body decoded. A message whose data did not end with "." (client gone) is not
kept. One file appended to, and the classic (compat32) parser, keep it above 1,000 e-mails/s.

Recipients whose local part starts with "reject" get 550 (permanent), with "defer" 451
(temporary). Prints "PORT <n>" on stdout once listening.

TLS: --tls wrapper (TLS from the first byte, like smtps://) or --tls starttls (STARTTLS
offered; with it, nothing but EHLO/STARTTLS/QUIT is accepted before TLS), with --cert and
--key (PEM). --auth USER:PASS requires AUTH PLAIN or LOGIN (offered only under TLS) before
MAIL; a wrong password gets 535. The JSON then also says "tls" and "auth_user".

--no-pipelining: PIPELINING is not offered, and a command that arrives before the previous
reply was read (a client pipelining anyway) gets 503. --max-per-session N: after N accepted
messages in one session the sink answers the next command with 421 and closes (as relays
limiting messages per connection do).

usage: sink.py --dir DIR [--port N] [--tls wrapper|starttls --cert PEM --key PEM]
               [--auth USER:PASS] [--no-pipelining] [--max-per-session N]
"""

import argparse
import asyncio
import base64
import email
import email.header
import json
import os
import ssl
import sys


class Session:
    def __init__(self, reader, writer, out, opts):
        self.r = reader
        self.w = writer
        self.out = out
        self.opts = opts
        self.tls = opts.tls == "wrapper"
        self.auth_user = None
        self.accepted = 0
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
            # StreamReader keeps what arrived beyond this line in _buffer: a client that
            # waits for each reply never has anything there.
            if self.opts.no_pipelining and verb in ("MAIL", "RCPT") and len(self.r._buffer):
                await self.reply("503 5.5.0 PIPELINING was not offered")
                return
            if self.opts.max_per_session and self.accepted >= self.opts.max_per_session:
                await self.reply("421 4.7.0 too many messages in this session")
                return
            if (
                self.opts.tls == "starttls"
                and not self.tls
                and verb not in ("EHLO", "HELO", "STAR", "QUIT", "NOOP", "RSET")
            ):
                await self.reply("530 5.7.0 must issue STARTTLS first")
                continue
            if verb == "EHLO":
                self.reset()
                await self.reply("250-sink greets " + arg)
                if self.opts.tls == "starttls" and not self.tls:
                    await self.reply("250-STARTTLS")
                if self.opts.auth and self.tls:
                    await self.reply("250-AUTH PLAIN LOGIN")
                if not self.opts.no_pipelining:
                    await self.reply("250-PIPELINING")
                await self.reply("250-8BITMIME")
                await self.reply("250 SMTPUTF8")
            elif text.upper() == "STARTTLS":
                if self.opts.tls != "starttls" or self.tls:
                    await self.reply("503 STARTTLS not available")
                    continue
                await self.reply("220 go ahead")
                await self.w.start_tls(self.opts.ssl_context)
                self.tls = True
                self.reset()
            elif verb == "AUTH":
                await self.authenticate(arg)
            elif verb == "HELO":
                self.reset()
                await self.reply("250 sink")
            elif verb == "MAIL":
                if self.opts.auth and self.auth_user is None:
                    await self.reply("530 5.7.0 authentication required")
                    continue
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
                self.accepted += 1
                self.reset()
                if self.opts.delay_ms:
                    await asyncio.sleep(self.opts.delay_ms / 1000)
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

    async def authenticate(self, arg):
        parts = arg.split()
        mech = parts[0].upper() if parts else ""
        if not self.opts.auth or not self.tls:
            await self.reply("503 AUTH not available")
            return
        if mech == "PLAIN":
            data = parts[1] if len(parts) > 1 else await self.challenge("")
            try:
                _, user, password = base64.b64decode(data).decode().split("\0")
            except ValueError:
                await self.reply("501 malformed")
                return
        elif mech == "LOGIN":
            user = base64.b64decode(await self.challenge("VXNlcm5hbWU6")).decode()
            password = base64.b64decode(await self.challenge("UGFzc3dvcmQ6")).decode()
        else:
            await self.reply("504 mechanism not supported")
            return
        if "%s:%s" % (user, password) == self.opts.auth:
            self.auth_user = user
            await self.reply("235 2.7.0 authenticated")
        else:
            await self.reply("535 5.7.8 authentication credentials invalid")

    async def challenge(self, prompt):
        await self.reply("334 " + prompt)
        return (await self.r.readline()).decode().strip()

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
        msg = email.message_from_bytes(raw)
        part = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), None)
        body = ""
        if part is not None:
            payload = part.get_payload(decode=True) or b""
            body = payload.decode(part.get_content_charset() or "utf-8", "replace")
        record = {
            "mail_from": self.mail_from,
            "rcpt_to": self.rcpt_to,
            "subject": header_text(msg.get("subject")),
            "message_id": str(msg.get("message-id", "")),
            "body": body,
            "raw": raw.decode("utf-8", "replace"),
            "tls": self.tls,
            "auth_user": self.auth_user,
        }
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        # One write to an O_APPEND file: a reader sees whole lines (it skips an unfinished
        # last one).
        while line:
            line = line[os.write(self.out, line) :]


def header_text(value):
    """An RFC 2047 header as text."""
    if value is None:
        return ""
    return str(email.header.make_header(email.header.decode_header(value)))


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
    p.add_argument("--tls", choices=["wrapper", "starttls"])
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth")
    p.add_argument("--no-pipelining", action="store_true")
    p.add_argument("--max-per-session", type=int, default=0)
    # A slow relay: the 250 after each message's data comes this many ms after it is stored.
    p.add_argument("--delay-ms", type=int, default=0)
    a = p.parse_args()
    a.ssl_context = None
    if a.tls:
        a.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        a.ssl_context.load_cert_chain(a.cert, a.key)
    os.makedirs(a.dir, exist_ok=True)
    started = len([n for n in os.listdir(a.dir) if n.endswith(".jsonl")])
    path = os.path.join(a.dir, "%06d-%d.jsonl" % (started, os.getpid()))
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    async def handle(reader, writer):
        try:
            await Session(reader, writer, out, a).run()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(
        handle,
        "127.0.0.1",
        a.port,
        reuse_address=True,
        ssl=a.ssl_context if a.tls == "wrapper" else None,
    )
    port = server.sockets[0].getsockname()[1]
    print("PORT %d" % port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
