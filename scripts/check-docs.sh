#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Check the documentation: parse every Documentation/*.rst with docutils in
# strict mode (any warning fails), and check that index.rst's list of
# documents names every other Documentation/*.rst and only existing ones.
# Runs with the rootfs's python3 and Debian's python3-docutils, fetched once
# into the cache and unpacked there (kept out of the rootfs so that the
# kernel builds' cache keys do not move with it).
# Prints "ok FILE" or "FAIL FILE: message" per file; exits non-zero if any
# file failed.
. "$(dirname "$0")/lib.sh"

docs=${SECMMU_DOCS:-$SECMMU_TOP/Documentation}
[ -f "$docs/index.rst" ] || die "no $docs/index.rst"

# One file per run: python3 -c CHECK DOCS_DIR FILE. The index lists the
# documents as plain reStructuredText links to "name.rst" (no Sphinx
# toctree); every other file must be one of them, and every one must exist.
read -r -d '' CHECK <<'EOF' || true
import io, os, re, sys

docs, name = sys.argv[1], sys.argv[2]
try:
    import docutils.core, docutils.nodes
except ImportError as e:
    print(f"FAIL {name}: docutils is not installed ({e})")
    sys.exit(1)
STRICT = {"report_level": 2, "halt_level": 2, "warning_stream": io.StringIO()}

def parse(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return docutils.core.publish_doctree(
        text, source_path=path, settings_overrides=STRICT)

def first_line(e):
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__

def index_entries():
    tree = parse(os.path.join(docs, "index.rst"))
    out = []
    for ref in getattr(tree, "findall", tree.traverse)(docutils.nodes.reference):
        uri = ref.get("refuri", "")
        if re.fullmatch(r"[A-Za-z0-9_.-]+\.rst", uri) and uri not in out:
            out.append(uri)
    return out

try:
    parse(os.path.join(docs, name))
except Exception as e:
    print(f"FAIL {name}: {first_line(e)}")
    sys.exit(1)

try:
    entries = index_entries()
except Exception as e:
    print(f"FAIL {name}: cannot read the list of documents in index.rst: {first_line(e)}")
    sys.exit(1)

if name == "index.rst":
    missing = [u for u in entries if not os.path.isfile(os.path.join(docs, u))]
    if missing:
        print(f"FAIL {name}: listed but missing: {', '.join(missing)}")
        sys.exit(1)
    if not entries:
        print(f"FAIL {name}: lists no document")
        sys.exit(1)
elif name not in entries:
    print(f"FAIL {name}: not listed in index.rst")
    sys.exit(1)
print(f"ok {name}")
EOF

du="$SECMMU_CACHE/docutils"
if [ ! -f "$du/.complete" ]; then
	"$SECMMU_TOP/scripts/provision-rootfs.sh" || exit 1
	fetch_docutils() {
		rm -rf "$du" && mkdir -p "$du/deb" &&
			in_rootfs "cd '$du/deb' && apt-get download -q python3-docutils docutils-common python3-roman" &&
			for d in "$du"/deb/*.deb; do dpkg-deb -x "$d" "$du/root" || return 1; done &&
			touch "$du/.complete"
	}
	step "fetch python3-docutils" fetch_docutils >&2 || die "cannot fetch python3-docutils"
fi

files=$(cd "$docs" && ls -- *.rst)
cmds=""
for f in $files; do
	cmds+="python3 -c $(printf '%q' "$CHECK") $(printf '%q' "$docs") $(printf '%q' "$f") || rc=1; "
done
in_rootfs "export PYTHONPATH='$du/root/usr/lib/python3/dist-packages'; rc=0; ${cmds}exit \$rc"
