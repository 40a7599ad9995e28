"""Content fingerprints of what a job reads from the user, for params: staleness by content.

Snakemake reruns a job when an input is newer than its outputs. A file replaced by
an older-dated one (`cp -p`, `rsync -t`, `git checkout` of an older commit, an
unpacked archive, `touch -d`) is not newer, so the jobs that read it would keep
their old results. The plan therefore puts the sha256 of each user file a job reads
(vectors, example files, the model's files) in that job's params: a changed byte
changes the params, whatever the file's date, and reruns exactly the jobs reading it.

Hashing is cached by (size, mtime, inode) per path in .snakemake/traitflow/fingerprints.json,
so a plan costs one stat per user file; only a new or changed file is read again.
Hugging Face cache files are symlinks to blobs named by their content hash: that name
is used as it is, so a multi-GB model is never read at plan time.
"""

import hashlib
import json
import os
import re

from ..core.manifests import sha256_file

CACHE = os.path.join(".snakemake", "traitflow", "fingerprints.json")
_HUB_BLOB = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")  # git sha1 (small files) or sha256 (LFS) of the content


class Fingerprints:
    """sha256 (hex) of files by path, cached across plans; save() writes the cache once at the end."""

    def __init__(self, cache_path=CACHE):
        self.cache_path = cache_path
        try:
            with open(cache_path, encoding="utf-8") as fh:
                self.cache = json.load(fh)
        except (OSError, ValueError):
            self.cache = {}
        self.changed = False
        self.seen = {}  # path -> hash, for this plan (one stat per file however many rules ask)

    def __call__(self, path):
        """The content hash of path, or None when it does not exist (yet: a workflow output)."""
        if path not in self.seen:
            self.seen[path] = self._hash(path)
        return self.seen[path]

    def _hash(self, path):
        try:
            st = os.stat(path)
        except OSError:
            return None
        real = os.path.realpath(path) if os.path.islink(path) else None
        if real and os.path.basename(os.path.dirname(real)) == "blobs" and _HUB_BLOB.match(os.path.basename(real)):
            return os.path.basename(real)
        key = [st.st_size, st.st_mtime_ns, st.st_ino]
        absolute = os.path.abspath(path)
        entry = self.cache.get(absolute)
        if entry is None or entry[:3] != key:
            entry = key + [sha256_file(path)]
            self.cache[absolute], self.changed = entry, True
        return entry[3]

    def folder(self, folder):
        """One hash over every file of a model folder (name and content; hidden files left out), or None."""
        if not folder or not os.path.isdir(folder):
            return None
        h = hashlib.sha256()
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.startswith(".") or not os.path.isfile(path):
                continue
            h.update(f"{name}\0{self(path)}\n".encode())
        return h.hexdigest()

    def save(self):
        if not self.changed:
            return
        from ..core.formats import save_json
        try:
            save_json(self.cache, self.cache_path)
        except OSError:  # a read-only working directory only loses the cache
            pass
        self.changed = False
