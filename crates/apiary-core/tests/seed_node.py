#!/usr/bin/env python3
"""The seed page's Python node ("Creating Custom Nodes"), its fragments assembled into one script.

Changed from the page, as the tests allow: the port and the TLS settings (the Core's CA file is
trusted instead of the system store), and the TOTP code, which is computed from
APIARY_TOTP_SECRET when the test enrolled the node (the page sends the literal "123456", which
an open-enrollment Core accepts for an unknown name). handle_command, left to the reader by the
page, prints the command and exits so the test can see it.
"""
import base64
import hashlib
import hmac
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time

use_tls = os.environ.get("APIARY_TLS", "1") == "1"
port = int(os.environ["APIARY_CORE_PORT"])


def totp_code():
    secret = os.environ.get("APIARY_TOTP_SECRET")
    if not secret:
        return "123456"
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
    offset = digest[19] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return "%06d" % (value % 1000000)


# 1. Connect to Core
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

# Optional: Wrap with TLS
if use_tls:
    context = ssl.create_default_context(cafile=os.environ["APIARY_CA_FILE"])
    sock = context.wrap_socket(sock, server_hostname="honeybee-manager")

sock.connect(("localhost", port))

# 2. Register Node
registration = {
    "version": 2,
    "message": {
        "NodeRegistration": {
            "node_id": 12345,
            "node_name": "my-python-node",
            "address": "0.0.0.0",
            "port": 8080,
            "node_type": "Full",
            "totp_code": totp_code()  # If TOTP enabled
        }
    }
}

message = json.dumps(registration) + "\n"
sock.sendall(message.encode())


def handle_command(command):
    print("COMMAND " + json.dumps(command, sort_keys=True), flush=True)
    sys.exit(0)


# 4. Send Heartbeat
def heartbeat():
    while True:
        status_update = {
            "version": 2,
            "message": {
                "NodeStatusUpdate": {
                    "node_id": 12345,
                    "status": "Running"
                }
            }
        }

        message = json.dumps(status_update) + "\n"
        sock.sendall(message.encode())

        time.sleep(30)  # Every 30 seconds


# 3. Handle Messages
while True:
    data = sock.recv(4096)
    if not data:
        break

    message = json.loads(data.decode())

    if "RegistrationAck" in message["message"]:
        ack = message["message"]["RegistrationAck"]
        if ack["accepted"]:
            print("Registration successful", flush=True)
            threading.Thread(target=heartbeat, daemon=True).start()
        else:
            print("REJECTED " + str(ack.get("message")), flush=True)
            sys.exit(2)

    elif "NodeCommand" in message["message"]:
        command = message["message"]["NodeCommand"]
        handle_command(command)

sys.exit(3)
