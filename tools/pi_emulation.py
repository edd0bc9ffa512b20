#!/usr/bin/env python3
"""Run edgemobile's device install on an emulated Raspberry Pi OS (64-bit and 32-bit) and
compare its eval image by image with this machine's.

Raspberry Pi OS bookworm is Debian bookworm plus the Pi's kernel and firmware, so a Debian
bookworm rootfs of the same architecture, run under qemu user-mode emulation (binfmt_misc),
is the Pi's userland: same Python 3.11, same Debian numpy/Pillow packages, same wheels.

    sudo python tools/pi_emulation.py check
    sudo python tools/pi_emulation.py run --arch arm64 armhf --model m_int8.tflite m_uint8.tflite \\
        --images DIR --out OUT

``run`` builds each rootfs once (``mmdebstrap``, cached in ``--cache``, default
/var/cache/edgemobile-pi, outside any checkout, reused by later runs), installs the runtime
the way docs/raspberry-pi.md tells a Pi user (64-bit: a venv and ``pip install "edgemobile[runtime]"``
from this checkout; 32-bit: Debian's python3-numpy/python3-pil, a ``--system-site-packages``
venv and ``pip install edgemobile tflite-runtime``), evaluates every model on this machine
with ``eval --outputs`` and then, inside the emulated machine, runs ``predict``, ``eval``
(``--reference`` the host's outputs, image by image) and ``bench``, writing their JSON to
``OUT/<arch>/`` and a summary (build, install and run times, venv size, runtime picked,
NumPy version) to ``OUT/summary.json``.

Emulation details handled here: binfmt_misc is mounted and qemu's handlers registered (flag F,
so the static qemu needs no copy in the rootfs); ``QEMU_CPU`` is a Pi 4 core (cortex-a72 on
arm64: qemu 7.2's default ``max`` CPU, with SME, makes XNNPACK's int8 outputs garbage;
cortex-a15 on armhf, the ARMv7 core with NEON/VFPv4 that qemu-arm models); a Pi-4-like
/proc/cpuinfo is bind-mounted over the emulated /proc/cpuinfo (qemu shows the host's, and
LiteRT crashes in allocate_tensors on it); the host's CA bundle goes in as ``PIP_CERT`` (this
network re-signs TLS). Everything mounted is unmounted, also on failure or Ctrl-C.

Exit status: 0 done; 2 a failure (one line ``pi_emulation: error: …``); 3 this machine cannot
emulate (no root, no binfmt_misc, no qemu/mmdebstrap); 4 the rootfs cannot be built because the
Debian mirror is unreachable.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(os.environ.get("EDGEMOBILE_PI_CACHE", "/var/cache/edgemobile-pi"))
MIRROR = os.environ.get("EDGEMOBILE_PI_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
CANNOT_EMULATE, MIRROR_UNREACHABLE = 3, 4
BINFMT = Path("/proc/sys/fs/binfmt_misc")
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
VENV = "/root/edgemobile-env"

# Per architecture: Debian arch, qemu binary, binfmt handler name, QEMU_CPU, Debian packages,
# and the install commands of docs/raspberry-pi.md word for word, but for the source: the checkout
# (copied to /opt/edgemobile-src) instead of the wheel built from it.
ARCHES = {
    "arm64": {
        "qemu": "qemu-aarch64-static", "binfmt": "qemu-aarch64", "cpu": "cortex-a72", "machine": "aarch64",
        "packages": ["python3", "python3-venv", "python3-pip", "ca-certificates"],
        "install": [f"python3 -m venv {VENV}", f". {VENV}/bin/activate",
                    'pip install "/opt/edgemobile-src[runtime]"'],
        "runtime": "ai-edge-litert",
    },
    "armhf": {
        "qemu": "qemu-arm-static", "binfmt": "qemu-arm", "cpu": "cortex-a15", "machine": "armv7l",
        "packages": ["python3", "python3-venv", "python3-pip", "ca-certificates"],
        # mmdebstrap drops the package lists: fetch them once, before the docs' apt command.
        "install": ["dpkg -s python3-numpy python3-pil >/dev/null 2>&1 || apt-get update -q >/dev/null",
                    "apt-get install -y -q python3-numpy python3-pil >/dev/null",
                    f"python3 -m venv --system-site-packages {VENV}", f". {VENV}/bin/activate",
                    "pip install /opt/edgemobile-src tflite-runtime"],
        "runtime": "tflite_runtime",
    },
}

_CPU_ARM64 = """processor\t: {n}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
"""
_CPU_ARMHF = """processor\t: {n}
model name\t: ARMv7 Processor rev 3 (v7l)
BogoMIPS\t: 108.00
Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm
CPU implementer\t: 0x41
CPU architecture: 7
CPU variant\t: 0x2
CPU part\t: 0xc0f
CPU revision\t: 3
"""
_CPU_TAIL = "Hardware\t: BCM2835\nRevision\t: c03111\nSerial\t\t: 10000000deadbeef\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n"


class Fail(Exception):
    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def log(text: str) -> None:
    print(f"pi_emulation: {text}", file=sys.stderr, flush=True)


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, text=True, **kwargs)


# -- can this machine emulate? ----------------------------------------------------------------
def check_machine(arches) -> None:
    """Register binfmt handlers for ``arches`` or raise Fail(CANNOT_EMULATE) with the reason."""
    if os.geteuid() != 0:
        raise Fail("needs root (chroot, mounts and binfmt_misc registration)", CANNOT_EMULATE)
    for tool in ["mmdebstrap", *(ARCHES[a]["qemu"] for a in arches)]:
        if shutil.which(tool) is None:
            raise Fail(f"{tool} not found (apt-get install qemu-user-static binfmt-support mmdebstrap)",
                       CANNOT_EMULATE)
    if not (BINFMT / "register").exists():
        proc = run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True)
        if proc.returncode != 0 or not (BINFMT / "register").exists():
            raise Fail(f"binfmt_misc cannot be mounted at {BINFMT} ({proc.stderr.strip() or 'no register file'})",
                       CANNOT_EMULATE)
    for arch in arches:
        name = ARCHES[arch]["binfmt"]
        if not (BINFMT / name).exists():
            conf = Path(f"/usr/lib/binfmt.d/{name}.conf")
            if not conf.exists():
                raise Fail(f"{conf} missing (apt-get install qemu-user-static)", CANNOT_EMULATE)
            try:
                (BINFMT / "register").write_text(conf.read_text().strip())
            except OSError as exc:
                raise Fail(f"cannot register {name} in {BINFMT} ({exc.strerror})", CANNOT_EMULATE) from None
        status = (BINFMT / name).read_text()
        if not status.startswith("enabled") or "F" not in status.split("flags:")[1].split()[0]:
            raise Fail(f"{BINFMT / name} is not enabled with flag F (fix binary): {status.split()[0:4]}",
                       CANNOT_EMULATE)


def mirror_reachable() -> str | None:
    try:
        with urllib.request.urlopen(f"{MIRROR}/dists/{SUITE}/Release", timeout=20) as r:
            r.read(64)
        return None
    except OSError as exc:
        return str(getattr(exc, "reason", exc))


# -- mounts ---------------------------------------------------------------------------------------
class Mounts:
    """Mounts into a rootfs, always undone in reverse order."""

    def __init__(self, rootfs: Path):
        self.rootfs = rootfs
        self.done: list[Path] = []

    def bind(self, source: Path, target: str, readonly: bool = False) -> None:
        where = self.rootfs / target.lstrip("/")
        if source.is_dir():
            where.mkdir(parents=True, exist_ok=True)
        elif not where.exists():
            where.parent.mkdir(parents=True, exist_ok=True)
            where.touch()
        self._mount(["mount", "--bind", str(source), str(where)], where)
        if readonly:
            self._check(["mount", "-o", "remount,bind,ro", str(where)], where)

    def proc(self) -> None:
        where = self.rootfs / "proc"
        where.mkdir(exist_ok=True)
        self._mount(["mount", "-t", "proc", "proc", str(where)], where)

    def sys(self) -> None:
        """Read-only sysfs: XNNPACK's cpuinfo reads /sys/devices/system/cpu (without it,
        'Error in cpuinfo: failed to parse …' and no XNNPACK)."""
        where = self.rootfs / "sys"
        where.mkdir(exist_ok=True)
        self._mount(["mount", "-t", "sysfs", "-o", "ro", "sysfs", str(where)], where)

    def _mount(self, cmd, where: Path) -> None:
        self._check(cmd, where)
        self.done.append(where)

    @staticmethod
    def _check(cmd, where) -> None:
        proc = run(cmd, capture_output=True)
        if proc.returncode != 0:
            raise Fail(f"cannot mount {where}: {proc.stderr.strip()}")

    def close(self) -> None:
        for where in reversed(self.done):
            if run(["umount", str(where)], capture_output=True).returncode != 0:
                run(["umount", "-l", str(where)], capture_output=True)
        self.done.clear()

    def __enter__(self):
        release_mounts(self.rootfs)
        return self

    def __exit__(self, *exc):
        self.close()


def release_mounts(root: Path) -> list[str]:
    """Unmount whatever is still mounted under ``root`` (deepest first) and return it: a
    killed run's mounts, or mmdebstrap's /sys when its umount failed (then mounting sysfs
    there again fails with "sysfs already mounted")."""
    prefix = str(root.resolve()).rstrip("/") + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]) for line in f]
    stale = sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True)
    for where in stale:
        if run(["umount", where], capture_output=True).returncode != 0:
            run(["umount", "-l", where], capture_output=True)
    return stale


@contextlib.contextmanager
def machine(arch: str, rootfs: Path, binds: dict[str, tuple[Path, bool]], scratch: Path):
    """The emulated machine: /proc, /dev, a Pi /proc/cpuinfo, network and CA bundle, ``binds``."""
    spec = ARCHES[arch]
    cpuinfo = scratch / f"cpuinfo-{arch}"
    template = _CPU_ARM64 if arch == "arm64" else _CPU_ARMHF
    cpuinfo.write_text("\n".join(template.format(n=n) for n in range(4)) + "\n" + _CPU_TAIL)
    shutil.copy2("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    shutil.copy2(HOST_CA, rootfs / "etc/host-ca.crt")
    with Mounts(rootfs) as mounts:
        mounts.proc()
        mounts.sys()
        mounts.bind(cpuinfo, "/proc/cpuinfo", readonly=True)
        mounts.bind(Path("/dev"), "/dev")
        for target, (source, readonly) in binds.items():
            mounts.bind(source, target, readonly=readonly)
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
               "LANG": "C.UTF-8", "QEMU_CPU": spec["cpu"], "PIP_CERT": "/etc/host-ca.crt",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_DEFAULT_TIMEOUT": "180",
               "DEBIAN_FRONTEND": "noninteractive", "PYTHONDONTWRITEBYTECODE": "1"}

        def sh(script: str, what: str, capture: bool = False) -> str:
            proc = run([CHROOT, str(rootfs), "/bin/sh", "-ec", script], env=env,
                       capture_output=capture, stdout=None if capture else sys.stderr)
            if proc.returncode != 0:
                tail = (proc.stderr or "").strip().splitlines()[-1:] if capture else []
                raise Fail(f"{arch}: {what} failed (exit {proc.returncode}){': ' + tail[0] if tail else ''}")
            return proc.stdout if capture else ""

        yield sh


# -- rootfs ---------------------------------------------------------------------------------------
def build_rootfs(arch: str, cache: Path) -> tuple[Path, float | None]:
    """The cached rootfs of ``arch`` (built now if absent) and the seconds a build took now.
    A build another process is running (``build`` started in the background) is waited for."""
    rootfs = cache / arch / "rootfs"
    (cache / arch).mkdir(parents=True, exist_ok=True)
    with open(cache / arch / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (cache / arch / "rootfs.json").exists():
            return rootfs, None
        reason = mirror_reachable()
        if reason:
            raise Fail(f"Debian mirror {MIRROR} unreachable ({reason}): cannot build the {arch} rootfs",
                       MIRROR_UNREACHABLE)
        tmp = cache / arch / "rootfs.tmp"
        if tmp.exists():
            release_mounts(tmp)
            shutil.rmtree(tmp)
        log(f"building the {arch} bookworm rootfs in {rootfs} (once)")
        start = time.perf_counter()
        proc = run(["mmdebstrap", "--variant=apt", f"--architectures={arch}",
                    "--include=" + ",".join(ARCHES[arch]["packages"]), SUITE, str(tmp), MIRROR], stdout=sys.stderr)
        left = release_mounts(tmp)
        if proc.returncode != 0:
            raise Fail(f"{arch}: mmdebstrap failed (exit {proc.returncode})")
        if left:
            log(f"unmounted what mmdebstrap left mounted: {', '.join(left)}")
        seconds = time.perf_counter() - start
        if rootfs.exists():
            shutil.rmtree(rootfs)
        tmp.rename(rootfs)
        (cache / arch / "rootfs.json").write_text(json.dumps({"seconds": round(seconds, 1), "mirror": MIRROR}) + "\n")
        return rootfs, seconds


def build_all(arches: list[str], cache: Path) -> dict[str, tuple[Path, float | None]]:
    """Every rootfs of ``arches``, the missing ones built at the same time: each build is
    mostly one emulated dpkg at a time (one core) or downloads, so two overlap well."""
    with ThreadPoolExecutor(len(arches)) as pool:
        futures = {arch: pool.submit(build_rootfs, arch, cache) for arch in arches}
        return {arch: future.result() for arch, future in futures.items()}


def copy_checkout(destination: Path) -> None:
    """This checkout's tracked and untracked (not ignored) files, as pip would see a clone."""
    if destination.exists():
        shutil.rmtree(destination)
    listing = run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                  capture_output=True)
    if listing.returncode != 0:
        raise Fail(f"cannot list the checkout's files: {listing.stderr.strip()}")
    for name in filter(None, listing.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def install(arch: str, rootfs: Path, sh, scratch: Path) -> str:
    """The runtime in the rootfs' venv: docs/raspberry-pi.md's commands word for word when the venv is
    new or they (or pyproject.toml) changed since; otherwise only this checkout's edgemobile,
    as a wheel built here (pure Python: building it under emulation takes minutes)."""
    stamp_text = json.dumps([ARCHES[arch]["install"], (ROOT / "pyproject.toml").read_text()])
    stamp = rootfs / VENV.lstrip("/") / "edgemobile-install.json"
    if stamp.exists() and stamp.read_text() == stamp_text:
        wheels = scratch / "wheel"
        proc = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   capture_output=True)
        if proc.returncode != 0:
            raise Fail(f"cannot build the edgemobile wheel: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        wheel = next(wheels.glob("edgemobile-*.whl"))
        shutil.copy2(wheel, rootfs / "tmp" / wheel.name)
        sh(f"{VENV}/bin/pip install -q --no-deps --force-reinstall /tmp/{wheel.name}", "updating edgemobile")
        return "cached venv, edgemobile updated from this checkout"
    shutil.rmtree(rootfs / VENV.lstrip("/"), ignore_errors=True)
    sh("\n".join(ARCHES[arch]["install"]), "installing the runtime as docs/raspberry-pi.md says")
    stamp.write_text(stamp_text)
    return "docs/raspberry-pi.md commands: " + " && ".join(ARCHES[arch]["install"])


# -- the run --------------------------------------------------------------------------------------
def host_outputs(models: list[Path], images: Path, out: Path, threads: int) -> dict[str, Path]:
    """This machine's eval of every model, with ``--outputs`` (the device's reference)."""
    files = {}
    host = out / "host"
    host.mkdir(parents=True, exist_ok=True)
    for model in models:
        npz, summary = host / f"{model.stem}.npz", host / f"{model.stem}.eval.json"
        for f in (npz, summary):
            f.unlink(missing_ok=True)
        proc = run([sys.executable, "-m", "edgemobile", "eval", str(model), "--data", str(images), "--quiet",
                    "--threads", str(threads), "--outputs", str(npz), "--json", str(summary)],
                   stdout=sys.stderr, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                       filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
        if proc.returncode != 0:
            raise Fail(f"host eval of {model} failed (exit {proc.returncode})")
        files[model.name] = npz
    return files


def run_arch(arch: str, built: tuple[Path, float | None], models: list[Path], images: Path, out: Path, cache: Path,
             references: dict[str, Path], predict_images: int, bench_runs: int) -> dict:
    rootfs, build_seconds = built
    record: dict = {"arch": arch, "qemu_cpu": ARCHES[arch]["cpu"],
                    "rootfs_build_seconds_cold": json.loads((cache / arch / "rootfs.json").read_text())["seconds"],
                    "rootfs_built_now": build_seconds is not None}
    arch_out = out / arch
    if arch_out.exists():
        shutil.rmtree(arch_out)
    arch_out.mkdir(parents=True)
    model_dir = out / "models"
    model_dir.mkdir(exist_ok=True)
    for m in models:
        shutil.copy2(m, model_dir / m.name)
    refs = out / "host"
    copy_checkout(rootfs / "opt/edgemobile-src")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pi-emulation-") as scratch, \
            machine(arch, rootfs, {"/mnt/models": (model_dir, True), "/mnt/images": (images, True),
                                   "/mnt/host": (refs, True), "/mnt/out": (arch_out, False)}, Path(scratch)) as sh:
        t = time.perf_counter()
        record["install"] = install(arch, rootfs, sh, Path(scratch))
        record["install_seconds"] = round(time.perf_counter() - t, 1)
        py = f"{VENV}/bin/python"
        facts = json.loads(sh(
            f"{py} -c \"import json, platform, numpy, PIL; from edgemobile.runtime.interpreter import "
            "interpreter_backend; print(json.dumps({'machine': platform.machine(), 'python': platform.python_version(),"
            " 'numpy': numpy.__version__, 'pillow': PIL.__version__, 'runtime': interpreter_backend()[0]}))\"",
            "reading the installed versions", capture=True).strip().splitlines()[-1])
        record.update(facts)
        site = run([CHROOT, str(rootfs), py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   capture_output=True, env={"QEMU_CPU": ARCHES[arch]["cpu"], "PATH": "/usr/bin:/bin"}).stdout.strip()
        record["venv_site_packages_mb"] = round(du(rootfs / site.lstrip("/")) / 1e6, 1) if site else None
        record["venv_mb"] = round(du(rootfs / VENV.lstrip("/")) / 1e6, 1)
        sample = sorted(p for p in images.rglob("*") if p.is_file())[:predict_images]
        for m in models:
            stem = m.stem
            cmd = f"{py} -m edgemobile"
            pics = " ".join(shlex.quote("/mnt/images/" + p.relative_to(images).as_posix()) for p in sample)
            sh(f"{cmd} predict /mnt/models/{m.name} {pics} --json /mnt/out/{stem}.predict.json >/dev/null",
               f"predict {m.name}")
            ref = f" --reference /mnt/host/{references[m.name].name}" if m.name in references else ""
            sh(f"{cmd} eval /mnt/models/{m.name} --data /mnt/images --quiet{ref} --outputs /mnt/out/{stem}.npz "
               f"--json /mnt/out/{stem}.eval.json", f"eval {m.name}")
            sh(f"{cmd} bench /mnt/models/{m.name} --threads 1 --xnnpack on off --warmup 2 --runs {bench_runs} "
               f"--json /mnt/out/{stem}.bench.json >/dev/null", f"bench {m.name}")
    record["run_seconds"] = round(time.perf_counter() - start, 1)
    ok = record["runtime"] == ARCHES[arch]["runtime"] and record["machine"] == ARCHES[arch]["machine"]
    record["as_expected"] = ok
    return record


def run_tests(arch: str, cache: Path, shared: Path, pytest_args: list[str]) -> int:
    """The runtime install's own test suite inside the emulated machine (after ``run``
    installed it): tests needing TensorFlow skip there with their reason."""
    rootfs = cache / arch / "rootfs"
    if not (rootfs / VENV.lstrip("/") / "bin/python").exists():
        raise Fail(f"{arch}: no runtime installed in {rootfs}; run 'run' first")
    copy_checkout(rootfs / "opt/edgemobile-src")
    with tempfile.TemporaryDirectory(prefix="pi-emulation-") as scratch, \
            machine(arch, rootfs, {"/mnt/shared": (shared, True)}, Path(scratch)) as sh:
        install(arch, rootfs, sh, Path(scratch))
        sh(f"{VENV}/bin/pip install -q pytest", "installing pytest")
        args = " ".join(shlex.quote(a) for a in pytest_args)
        try:
            sh(f"cd /opt/edgemobile-src && EDGEMOBILE_SHARED=/mnt/shared {VENV}/bin/python -m pytest "
               f"-p no:cacheprovider {args}", "pytest")
        except Fail as exc:
            print(f"pi_emulation: {exc}", file=sys.stderr)
            return 1
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="exit 0 if this machine can emulate (registers binfmt), else 3 with the reason")
    p.add_argument("--arch", nargs="+", choices=sorted(ARCHES), default=sorted(ARCHES))
    p = sub.add_parser("build", help="build (once) the cached rootfs of each architecture")
    p.add_argument("--arch", nargs="+", choices=sorted(ARCHES), default=sorted(ARCHES))
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p = sub.add_parser("run", help="install, then predict/eval/bench every model in the emulated machines")
    p.add_argument("--arch", nargs="+", choices=sorted(ARCHES), default=sorted(ARCHES))
    p.add_argument("--model", nargs="+", type=Path, required=True, help=".tflite files")
    p.add_argument("--images", type=Path, required=True, help="labeled image folder (eval --data layout)")
    p.add_argument("--out", type=Path, required=True, help="folder for the JSON (replaced per architecture)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"rootfs cache (default {DEFAULT_CACHE})")
    p.add_argument("--predict-images", type=int, default=3, help="images given to predict (default 3)")
    p.add_argument("--bench-runs", type=int, default=10, help="timed bench runs per setting (default 10)")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads of the host eval (default 1)")
    p = sub.add_parser("test", help="run the test suite with the runtime install inside the emulated machine")
    p.add_argument("--arch", nargs="+", choices=sorted(ARCHES), default=["arm64"])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("EDGEMOBILE_SHARED", ROOT.parent / "shared")))
    p.add_argument("pytest_args", nargs="*", help="passed to pytest (default: -q)")
    args = parser.parse_args(argv)
    try:
        check_machine(args.arch)
        if args.command == "check":
            print("pi_emulation: this machine can emulate " + ", ".join(args.arch))
            return 0
        if args.command == "build":
            for arch, (rootfs, seconds) in build_all(args.arch, args.cache).items():
                print(f"{arch}: {rootfs}" + (f" built in {seconds:.0f} s" if seconds else " (cached)"))
            return 0
        if args.command == "test":
            return max(run_tests(arch, args.cache, args.shared.resolve(), args.pytest_args or ["-q"])
                       for arch in args.arch)
        for f in [*args.model, args.images]:
            if not f.exists():
                raise Fail(f"{f}: does not exist")
        args.out.mkdir(parents=True, exist_ok=True)
        models = [m.resolve() for m in args.model]
        built = build_all(args.arch, args.cache)
        references = host_outputs(models, args.images.resolve(), args.out.resolve(), args.threads)
        summary = {"host_machine": os.uname().machine, "images": str(args.images), "architectures": {}}
        for arch in args.arch:
            summary["architectures"][arch] = run_arch(arch, built[arch], models, args.images.resolve(),
                                                      args.out.resolve(), args.cache, references,
                                                      args.predict_images, args.bench_runs)
            (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
        return 0
    except Fail as exc:
        print(f"pi_emulation: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("pi_emulation: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
