#!/usr/bin/python3
# Part of atomicbuild (builder/src/distro/fedora.rs runs it with the system
# python3, which has Debian's python3-dnf): resolve a package set with dnf's
# own solver against the repositories of CONF only, without installing, and
# optionally download the resolved packages into a checksum-addressed cache.
#
# usage: dnf_resolve.py CONF RELEASEVER STATEDIR KEYDIR DOWNLOADDIR SPEC...
#   DOWNLOADDIR "-" skips the download.
# stdout: one JSON object per package of the install set.
# stderr: progress, and on failure one line "atomicbuild-dnf: KIND: message".
# exit: 0 ok, 2 no match, 3 unsolvable, 4 repository, 5 download, 6 key.
import hashlib
import json
import os
import sys
import urllib.request

import dnf
import hawkey


def fail(code, kind, msg):
    print(f"atomicbuild-dnf: {kind}: {msg}", file=sys.stderr)
    sys.exit(code)


def fetch(url, dest, attempts=3, timeout=30):
    last = None
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                data = r.read()
            tmp = dest + ".part"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, dest)
            return data
        except Exception as e:  # bounded: `attempts` tries
            last = e
    raise RuntimeError(f"{url}: {last} (after {attempts} attempts)")


conf_path, releasever, statedir, keydir, downloaddir, *specs = sys.argv[1:]
base = dnf.Base()
c = base.conf
c.read(conf_path)
root = os.path.join(statedir, "emptyroot")
for d in ("log", "persist", "cache", "emptyroot"):
    os.makedirs(os.path.join(statedir, d), exist_ok=True)
c.installroot = root
c.cachedir = os.path.join(statedir, "cache")
c.logdir = os.path.join(statedir, "log")
c.persistdir = os.path.join(statedir, "persist")
c.releasever = releasever
c.substitutions["releasever"] = releasever
base.read_all_repos()

# The repositories' keys, for rpm in the new root.
os.makedirs(keydir, exist_ok=True)
for repo in base.repos.iter_enabled():
    for i, url in enumerate(repo.gpgkey):
        try:
            fetch(url, os.path.join(keydir, f"{repo.id}-{i}.asc"))
        except Exception as e:
            fail(6, "key", f"repository {repo.id}: cannot fetch its GPG key {e}")

try:
    base.fill_sack(load_system_repo=False, load_available_repos=True)
except dnf.exceptions.RepoError as e:
    fail(4, "repo", str(e))
try:
    base.install_specs(specs)
except dnf.exceptions.MarkingErrors as e:
    missing = list(e.no_match_pkg_specs or [])
    if missing:
        fail(2, "no match", ", ".join(missing))
    fail(3, "unsolvable", str(e))
try:
    base.resolve(allow_erasing=False)
except dnf.exceptions.DepsolveError as e:
    fail(3, "unsolvable", "; ".join(l.strip(" -") for l in str(e).splitlines() if l.strip()))

pkgs = sorted(base.transaction.install_set, key=lambda p: (p.name, p.arch))
out = []
for p in pkgs:
    ctype, cval = p.chksum
    kind = hawkey.chksum_name(ctype)
    if kind != "sha256":
        fail(4, "repo", f"{p.name}: the repository lists a {kind} checksum; sha256 is needed")
    out.append({
        "name": p.name, "epoch": p.epoch, "version": p.version,
        "release": p.release, "arch": p.arch, "repo": p.reponame,
        "url": p.remote_location(), "sha256": cval.hex(),
    })

if downloaddir != "-":
    os.makedirs(downloaddir, exist_ok=True)
    for o in out:
        dest = os.path.join(downloaddir, o["sha256"] + ".rpm")
        if os.path.exists(dest):
            with open(dest, "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() == o["sha256"]:
                    continue
            os.unlink(dest)
        print(f"downloading {o['name']}-{o['version']}-{o['release']}.{o['arch']}", file=sys.stderr)
        try:
            data = fetch(o["url"], dest)
        except Exception as e:
            fail(5, "download", str(e))
        if hashlib.sha256(data).hexdigest() != o["sha256"]:
            os.unlink(dest)
            fail(5, "download", f"{o['url']}: sha256 does not match the repository metadata")
base.close()
for o in out:
    print(json.dumps(o))
