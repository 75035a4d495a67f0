"""A programme manager's webhook receiver in Python, verifying certbound's deliveries with an
implementation of RFC 9421 that is not certbound's: the `http-message-signatures` package
(pyauth), with the key from the Cards API's GET /keys turned into a public key by `cryptography`,
and RFC 9530's Content-Digest recomputed with hashlib.

Usage: webhooks_receiver.py PORT CERT KEY JWKS_FILE EXPECTED OUT_FILE
Serves https://localhost:PORT/events until EXPECTED deliveries verified (or 60 s), then writes
them to OUT_FILE as JSON lines and exits 0; any delivery that does not verify exits 1.
"""
import base64, datetime, hashlib, http.server, json, re, ssl, sys, threading

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms

port, cert, key, jwks_file, expected, out = sys.argv[1:7]
expected = int(expected)


def b64url(text):
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


class Keys(HTTPSignatureKeyResolver):
    def resolve_public_key(self, key_id):
        jwks = json.load(open(jwks_file))
        for jwk in jwks["keys"]:
            if jwk["kid"] == key_id and jwk["use"] == "sig":
                return RSAPublicNumbers(b64url(jwk["e"]), b64url(jwk["n"])).public_key()
        raise KeyError(key_id)


class Message:
    def __init__(self, method, url, headers):
        self.method, self.url, self.headers = method, url, headers


verifier = HTTPMessageVerifier(signature_algorithm=algorithms.RSA_PSS_SHA512, key_resolver=Keys())
verified, failures, done = [], [], threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            digest = re.fullmatch(r"sha-256=:([A-Za-z0-9+/=]+):", self.headers["Content-Digest"]).group(1)
            if base64.b64decode(digest) != hashlib.sha256(body).digest():
                raise ValueError("Content-Digest is not the body's SHA-256")
            message = Message("POST", f"https://localhost:{port}{self.path}", self.headers)
            results = verifier.verify(message, max_age=datetime.timedelta(minutes=5),
                                      require_components=("@method", "@target-uri", "content-digest", "date"))
            event = json.loads(body)
            verified.append({"label": results[0].label, "keyid": results[0].parameters["keyid"],
                             "eventCode": event["context"]["eventCode"], "notificationId": event["context"]["notificationId"]})
            print(f"verified {event['context']['eventCode']} {event['context']['notificationId']} "
                  f"(rsa-pss-sha512, keyid {results[0].parameters['keyid']})", flush=True)
            self.send_response(204)
        except Exception as error:  # any failure is a test failure
            failures.append(repr(error))
            print(f"REFUSED: {error!r}", flush=True)
            self.send_response(401)
        self.end_headers()
        if failures or len(verified) >= expected:
            done.set()


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
done.wait(60)
server.shutdown()
with open(out, "w") as file:
    for entry in verified:
        file.write(json.dumps(entry) + "\n")
if failures or len(verified) < expected:
    print(f"FAIL: {len(verified)} verified of {expected}, failures {failures}")
    sys.exit(1)
