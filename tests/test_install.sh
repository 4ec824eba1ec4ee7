#!/usr/bin/env bash
# cmake --install puts the binary, libsupernode, sn_client.h and supernode.pc in place,
# and a program can be built against them with nothing but pkg-config.
set -euo pipefail
build=$1
extra_cflags=${2:-}   # the sanitizer flags, when the build under test has them
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/supernode include/sn_client.h; do
    [ -e "$prefix/$f" ] || { echo "missing $f"; exit 1; }
done
pc=$(find "$prefix" -name supernode.pc)
[ -n "$pc" ] || { echo "missing supernode.pc"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
cat > "$prefix/use.c" <<'C'
#include <sn_client.h>
#include <stdio.h>
int main (void)
{
    sn_client_t *client = sn_client_new ("tcp://127.0.0.1:1");
    sn_client_set_timeout (client, 50);
    int code = sn_client_get (client, "k", NULL);
    printf ("%d %s\n", code, sn_client_error (client));
    sn_client_destroy (&client);
    return code == -1 ? 0 : 1;
}
C
cc $extra_cflags "$prefix/use.c" -o "$prefix/use" $(pkg-config --cflags --libs supernode)
LD_LIBRARY_PATH=$(dirname "$(find "$prefix" -name 'libsupernode.so' | head -1)") "$prefix/use"
"$prefix/bin/supernode" help | grep -q "supernode run"

# The installed binary serves HTTPS with the libraries it installed in lib/supernode
# (the libssl.so and libcrypto.so civetweb loads; see gateway/tls/)
for f in libssl.so libcrypto.so; do
    [ -n "$(find "$prefix" -path "*/supernode/$f")" ] || { echo "missing lib/supernode/$f"; exit 1; }
done
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$prefix/n.key" -out "$prefix/n.crt" 2>/dev/null
cat "$prefix/n.crt" "$prefix/n.key" > "$prefix/n.pem"
/usr/bin/python3 - "$prefix" <<'PY'
import os, socket, subprocess, sys, time
import requests
prefix = sys.argv[1]
ports = []
for _ in range(3):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ports.append(s.getsockname()[1]); s.close()
node = subprocess.Popen([prefix + "/bin/supernode", "run", "--name", "inst", "--data", prefix + "/data",
                         "--http", f"127.0.0.1:{ports[0]}", "--clients", f"tcp://127.0.0.1:{ports[1]}",
                         "--peers", f"tcp://127.0.0.1:{ports[2]}", "--http-cert", prefix + "/n.pem",
                         "--map-size-mb", "64"],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
try:
    deadline = time.monotonic() + 60
    while True:
        if node.poll() is not None:
            sys.exit("installed supernode exited: " + node.stdout.read().decode())
        try:
            r = requests.get(f"https://127.0.0.1:{ports[0]}/health", verify=prefix + "/n.crt", timeout=1)
            if r.status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            sys.exit("installed supernode never answered over HTTPS")
        time.sleep(0.05)  # poll interval, not synchronisation
finally:
    node.terminate()
    node.wait(timeout=30)
PY
echo "install: binary, library, header, pkg-config file and HTTPS work"
