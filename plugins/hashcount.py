# HashCountRandom, HoneyPy's developer example, as an apiary Python service plugin.
# On connect: "ACCEPT_CONN: <remote ip>\n". For every chunk received: counter + 1, then the hex
# MD5 of the counter's decimal string, ":", 99 random bytes, "\n". The connection stays open.
import hashlib
import os


def md5sum(data):
    return hashlib.md5(str(data).encode()).hexdigest()


async def handle(conn):
    await conn.tx("ACCEPT_CONN: " + str(conn.remote_host) + "\n")
    count = 0
    while True:
        data = await conn.rx()
        if data is None:
            return
        count = count + 1
        await conn.tx(md5sum(count).encode() + b":" + os.urandom(99) + b"\n")
