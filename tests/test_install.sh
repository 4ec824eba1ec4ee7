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
# The library that gives civetweb what it lacks in OpenSSL 3, where only supernode
# looks, and the installed binary finds it there
compat=$(find "$prefix" -path '*/supernode/libssl.so')
[ -n "$compat" ] || { echo "missing lib/supernode/libssl.so"; exit 1; }
loaded=$(ldd "$prefix/bin/supernode" | awk '$1 == "libssl.so" { print $3 }')
[ -n "$loaded" ] && [ "$(realpath "$loaded")" = "$(realpath "$compat")" ] ||
    { echo "bin/supernode loads libssl.so from '$loaded', not $compat"; exit 1; }
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
echo "install: binary, library, header and pkg-config file work"
