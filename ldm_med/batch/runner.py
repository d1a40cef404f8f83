"""The batch run: plan, then for each series of this rank read -> reconstruct -> write -> send.

Per series, outputs are written into ``OUT_DIR/series/.tmp-<key>-<pid>`` and renamed to their folder
only when complete; then the manifest row is written. SIGTERM and Ctrl-C stop the run after
removing the temporary folder of the series in progress (exit 143 / 130); SIGKILL leaves one behind,
which the next run removes. A series that fails is recorded and the run goes on (exit 1 at the end).

``workers > 1`` overlaps I/O with compute on one machine: reading the next series' pixels and writing
the previous series' outputs run in threads while the main thread reconstructs.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ldm_med.batch import shard
from ldm_med.batch.config import BatchConfig
from ldm_med.batch.manifest import FINISHED, Manifest
from ldm_med.batch.naming import derive_uid, digest, indices_text
from ldm_med.batch.plan import Plan, SeriesPlan, discover
from ldm_med.errors import InputError
from ldm_med.io.report import redact


class Terminated(BaseException):
    """SIGTERM arrived: stop like Ctrl-C does (BaseException: no ``except Exception`` swallows it)."""


@dataclass
class Work:
    """One series on its way through read -> model -> write."""

    plan: SeriesPlan
    record: dict
    volume: object = None
    result: object = None
    missing: np.ndarray | None = None
    seconds: dict = field(default_factory=dict)


def _log(text: str, rank: shard.Rank, quiet: bool) -> None:
    if not quiet:
        prefix = f"[rank {rank.rank}] " if rank.enabled else ""
        try:
            from tqdm import tqdm

            tqdm.write(prefix + text, file=sys.stderr)
        except ImportError:
            print(prefix + text, file=sys.stderr, flush=True)


class Runner:
    def __init__(self, cfg: BatchConfig, rank: shard.Rank) -> None:
        self.cfg, self.rank = cfg, rank
        self.out = cfg.out_dir
        self.series_root = self.out / "series"
        self.manifest: Manifest | None = None
        self.anonymizer = None
        self.tmp_dirs: set[Path] = set()
        self.options = cfg.options

    # -- per series ----------------------------------------------------------------------------
    def read(self, work: Work) -> Work:
        from ldm_med.io.dicom_series import read_series

        t = time.perf_counter()
        work.volume = read_series(work.plan.info)
        work.seconds["read"] = time.perf_counter() - t
        return work

    def model(self, work: Work, progress: Callable | None) -> Work:
        import ldm_med

        t = time.perf_counter()
        vol = work.volume
        try:
            work.missing = ldm_med.parse_missing(self.cfg.missing, vol)
        except InputError as err:
            if self.cfg.missing.strip().lower() != "auto" or "found no missing" not in str(err):
                raise
            work.missing = np.zeros(vol.n_slices, dtype=bool)
        if work.missing.any():
            from ldm_med.io import limits

            need = limits.reconstruct_bytes(vol.shape, vol.spacing, vol.slice_axis, self.options.samples)
            limits.check_memory(need, f"series {work.plan.index} [{work.plan.key}]")  # refused, not killed
            work.result = ldm_med.reconstruct(vol, work.missing, self.options, progress=progress)
        work.seconds["model"] = time.perf_counter() - t
        return work

    def _derivation(self, work: Work):
        import ldm_med
        from ldm_med.batch.derived import Derivation

        plan, missing = work.plan, work.missing
        info = plan.info
        opts = self.options
        rec = (work.result.volume.metadata.get("reconstruction", {}) if work.result else {})
        uid = derive_uid("ldm-med derived series", info.uid, plan.key, self.options_digest)
        ks = np.flatnonzero(missing)
        model = rec.get("refiner") or ("shipped models" if opts.method == "ldm" else "none")
        text = (f"ldm-med {ldm_med.__version__} batch: {ks.size} of {missing.size} slice positions "
                f"synthesised" + (f" (InstanceNumber {indices_text(ks + 1)})" if ks.size else "")
                + f" by method {opts.method}, refine {opts.refine}, model {model}, sampler "
                f"{opts.sampler} x{opts.steps}, samples {opts.samples}, seed {opts.seed}; "
                "other slices carry the source's stored values")
        if len(text) > 1024:
            text = text[:1000] + "...; see report"
        desc = "ldm-med repaired" if self.cfg.anonymize else \
            f"ldm-med repaired {redact(info.description, info.identifiers)}"
        return Derivation(uid, text, desc[:64])

    def write(self, work: Work) -> Work:
        import ldm_med

        t = time.perf_counter()
        plan = work.plan
        final = self.out / plan.folder
        tmp = self.series_root / f".tmp-{plan.key}-{os.getpid()}"
        self.tmp_dirs.add(tmp)
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            vol = work.result.volume if work.result is not None else work.volume
            synth = np.asarray(work.missing, dtype=bool)
            outputs = []
            if "dicom" in self.cfg.formats:
                from ldm_med.batch.derived import write_derived

                der = self._derivation(work)
                paths = write_derived(plan.info, vol.data, synth, der, tmp / "dicom",
                                      self.anonymizer)
                outputs += [str(p.relative_to(tmp)) for p in paths]
                work.record["derived_series_uid"] = (self.anonymizer.uid(der.series_uid)
                                                     if self.anonymizer else der.series_uid)
            if "nifti" in self.cfg.formats:
                full = vol.with_data(vol.data, acquired=np.ones(vol.n_slices, dtype=bool),
                                     metadata={"modality": vol.metadata.get("modality")})
                ldm_med.save_volume(full, tmp / "volume.nii.gz")
                mask = np.zeros(vol.shape, dtype=np.float32)
                mask[:, :, synth] = 1.0
                ldm_med.save_volume(full.with_data(mask, metadata={"modality": "mask"}),
                                    tmp / "synthesised_mask.nii.gz")
                outputs += ["volume.nii.gz", "synthesised_mask.nii.gz"]
                if work.result is not None and work.result.uncertainty is not None:
                    ldm_med.save_volume(full.with_data(work.result.uncertainty,
                                                       metadata={"modality": "uncertainty"}),
                                        tmp / "uncertainty.nii.gz")
                    outputs.append("uncertainty.nii.gz")
            for p in sorted(tmp.rglob("*")):
                if p.is_file():
                    os.chmod(p, 0o644)
            _replace_dir(tmp, final)
            work.record["outputs"] = outputs
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            self.tmp_dirs.discard(tmp)
        work.seconds["write"] = time.perf_counter() - t
        if self.cfg.send is not None and "dicom" in self.cfg.formats:
            from ldm_med.batch.send import send_series

            t = time.perf_counter()
            files = sorted((final / "dicom").glob("*.dcm"))
            work.record["sent"] = send_series(self.cfg.send, files)
            work.seconds["send"] = time.perf_counter() - t
        return work

    def finish(self, work: Work, status: str, reason: str = "", code: str = "") -> dict:
        rec = work.record
        rec["status"] = status
        if reason:
            rec["reason"], rec["reason_code"] = reason, code
        if work.missing is not None:
            ks = np.flatnonzero(work.missing)
            rec["synthesised"] = [int(k) for k in ks]
            rec["n_synthesised"] = int(ks.size)
        rec["seconds"] = {k: round(v, 4) for k, v in work.seconds.items()}
        if (rec.get("sent") or {}).get("status") == "failed":
            rec["status"], rec["reason_code"] = "failed", "send_failed"
            rec["reason"] = "C-STORE failed: " + "; ".join(rec["sent"]["errors"])
        self.manifest.set(work.plan.key, rec["status"], rec, self.rank.rank)
        shown = {"done": f"repaired {rec.get('n_synthesised', 0)} slice(s)",
                 "complete": "complete (nothing missing)"}.get(rec["status"], rec["status"])
        if rec.get("reason"):
            shown += f": {rec['reason']}"
        total = sum(work.seconds.values())
        _log(f"series {work.plan.index} [{work.plan.key}]: {shown} ({total:.1f} s)", self.rank,
             self.cfg.quiet)
        return rec

    def fail(self, work: Work, err: BaseException) -> dict:
        ids = work.plan.info.identifiers
        if isinstance(err, InputError):  # the API refused: not safe to reconstruct
            return self.finish(work, "refused", redact(str(err), ids)[:500], "not_reconstructable")
        text = redact(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", ids)
        return self.finish(work, "failed", text[:500], "error")

    # -- the loop ------------------------------------------------------------------------------
    def _done_already(self, plan: SeriesPlan) -> bool:
        row = self.manifest.get(plan.key)
        if row is None or row[0] not in FINISHED:
            return False
        return row[0] == "refused" or row[0] == "complete" and not self.cfg.include_complete \
            or (self.out / plan.folder).is_dir()

    def _clean_stale(self, plans: list[SeriesPlan]) -> None:
        if not self.series_root.is_dir():
            return
        keys = {p.key for p in plans}
        for d in self.series_root.iterdir():
            parts = d.name.split("-")
            if d.name.startswith((".tmp-", ".old-")) and len(parts) >= 3 and parts[1] in keys:
                shutil.rmtree(d, ignore_errors=True)

    def run_series(self, plans: list[SeriesPlan], progress_factory) -> list[dict]:
        records = []
        todo: list[Work] = []
        for p in plans:
            rec = p.public(self.cfg.in_dir, self.cfg.anonymize)
            if p.decision == "refused":
                w = Work(p, rec)
                records.append(self.finish(w, "refused", p.reason, p.reason_code))
            elif self.cfg.resume and self._done_already(p):
                records.append(self.manifest.get(p.key)[1])
                _log(f"series {p.index} [{p.key}]: already finished, skipped (--resume)",
                     self.rank, self.cfg.quiet)
            else:
                todo.append(Work(p, rec))
        bar = progress_factory()
        total = len(todo)
        if bar is not None and total:
            bar("series", 0, total)
        done = 0

        def step(work: Work) -> None:
            nonlocal done
            done += 1
            if bar is not None:
                bar("series", done, total)

        try:
            if self.cfg.workers <= 1:
                for w in todo:
                    records.append(self._one(w))
                    step(w)
            else:
                records += self._pipelined(todo, step)
        finally:
            if bar is not None:
                bar.close()
        return records

    def _one(self, w: Work) -> dict:
        self.manifest.set(w.plan.key, "running", None, self.rank.rank)
        try:
            self.read(w)
            self.model(w, None)
            if w.result is None and not self.cfg.include_complete:
                return self.finish(w, "complete")
            self.write(w)
            return self.finish(w, "done" if w.result is not None else "complete")
        except Exception as err:  # noqa: BLE001 - one series failing does not stop the run
            return self.fail(w, err)

    def _pipelined(self, todo: list[Work], step) -> list[dict]:
        n_io = max(1, self.cfg.workers - 1)
        records = []
        readers, writers = ThreadPoolExecutor(n_io), ThreadPoolExecutor(n_io)
        pending_reads: list[Future] = []
        pending_writes: list[tuple[Work, Future]] = []
        try:
            ahead = iter(todo)
            for w in list(ahead)[: self.cfg.workers]:
                self.manifest.set(w.plan.key, "running", None, self.rank.rank)
                pending_reads.append(readers.submit(self.read, w))
            nxt = self.cfg.workers
            for i, w in enumerate(todo):
                fut = pending_reads[i]
                if nxt < len(todo):
                    self.manifest.set(todo[nxt].plan.key, "running", None, self.rank.rank)
                    pending_reads.append(readers.submit(self.read, todo[nxt]))
                    nxt += 1
                try:
                    fut.result()
                    self.model(w, None)
                except Exception as err:  # noqa: BLE001
                    records.append(self.fail(w, err))
                    step(w)
                    continue
                if w.result is None and not self.cfg.include_complete:
                    records.append(self.finish(w, "complete"))
                    step(w)
                    continue
                w.volume = w.volume if w.result is None else None  # free input pixels early
                pending_writes.append((w, writers.submit(self.write, w)))
                records += self._collect(pending_writes, step, block=False)
            records += self._collect(pending_writes, step, block=True)
        finally:
            for f in pending_reads:
                f.cancel()
            readers.shutdown(wait=True, cancel_futures=True)
            writers.shutdown(wait=True, cancel_futures=True)
        return records

    def _collect(self, pending: list, step, block: bool) -> list[dict]:
        out = []
        for item in list(pending):
            w, fut = item
            if not block and not fut.done():
                continue
            pending.remove(item)
            try:
                fut.result()
                out.append(self.finish(w, "done" if w.result is not None else "complete"))
            except Exception as err:  # noqa: BLE001
                out.append(self.fail(w, err))
            step(w)
        return out


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final`` (replacing an older ``final``) with renames only."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists():
        key = final.name.split("_")[-1]
        old = final.parent / f".old-{key}-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _options_digest(cfg: BatchConfig) -> str:
    o = cfg.options
    return digest(cfg.missing, o.method, o.refine, o.adapt_steps, o.refiner, o.sampler, o.steps,
                  o.samples, o.seed, o.checkpoint)[:16]


def _install_signals() -> dict:
    def on_term(signum, frame):
        raise Terminated()

    old = {}
    try:
        old[signal.SIGTERM] = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread
        pass
    return old


def _restore_signals(old: dict) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)


def dry_run_lines(plan: Plan, cfg: BatchConfig) -> list[str]:
    lines = [f"dry run: {cfg.in_dir} -> {cfg.out_dir} (nothing is written)",
             f"{plan.n_files} files, {len(plan.series)} series, {len(plan.skipped)} files skipped"]
    for p in plan.series:
        info = p.info
        if p.decision == "refused":
            what = f"leave alone: {p.reason}"
        elif info.missing.size:
            what = (f"repair {info.missing.size} missing slice(s) (k = "
                    f"{indices_text(info.missing)}) and any blank/corrupt ones -> {p.folder}")
        else:
            what = ("no geometry gaps: reconstruct only if blank/corrupt slices are found "
                    f"-> {p.folder}" if cfg.missing == "auto" else f"fill {cfg.missing} -> {p.folder}")
        lines.append(f"  series {p.index} [{p.key}] {p.info.modality or '?'} "
                     f"{' x '.join(map(str, info.shape))}: {what}")
    counts = plan.counts()
    if counts:
        lines.append("skipped files: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return lines


def run_batch(cfg: BatchConfig, progress_factory=lambda: None) -> int:
    """Run a batch; returns the exit code (0 all fine, 1 some series failed)."""
    from ldm_med.batch.report import summary, summary_lines, write_report

    start = time.perf_counter()
    rank = shard.init()
    plan = shard.broadcast(discover(cfg.in_dir, cfg.max_gap) if rank.is_main else None, rank)
    if cfg.dry_run:
        if rank.is_main:
            print("\n".join(dry_run_lines(plan, cfg)))
        shard.shutdown(rank)
        return 0
    if rank.enabled:
        from dataclasses import replace

        cfg = replace(cfg, options=replace(cfg.options,
                                           device=shard.device_for(rank, cfg.options.device)))
    runner = Runner(cfg, rank)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    shard.gather(None, rank)  # OUT_DIR exists before any rank opens the manifest
    runner.manifest = Manifest(cfg.out_dir / "manifest.sqlite")
    runner.options_digest = _options_digest(cfg)
    settings = digest(runner.options_digest, *cfg.formats, cfg.anonymize)[:16]
    before = runner.manifest.meta("settings")
    if before is not None and not (cfg.resume or cfg.overwrite):
        runner.manifest.close()
        raise InputError(f"{cfg.out_dir}: holds the results of an earlier run; pass --resume to finish it "
                         "or --overwrite to redo it, or choose another OUT_DIR")
    if cfg.resume and before is not None and before != settings:
        runner.manifest.close()
        raise InputError(f"{cfg.out_dir}: --resume with other settings than the run that wrote it "
                         "(reconstruction options, --missing, --format or --anonymize differ); "
                         "use the same settings, or another OUT_DIR")
    shard.gather(None, rank)  # every rank has checked before the first one records its settings
    if rank.is_main:
        runner.manifest.set_meta("settings", settings)
    if cfg.anonymize:
        from ldm_med.batch.anonymize import Anonymizer

        runner.anonymizer = Anonymizer(runner.manifest.salt())
    owners = shard.assign([p.n_voxels if p.decision == "todo" else 0 for p in plan.series],
                          rank.world)
    mine = [p for p, r in zip(plan.series, owners) if r == rank.rank]
    runner._clean_stale(mine)
    old = _install_signals()
    try:
        records = runner.run_series(mine, progress_factory)
    finally:
        for tmp in list(runner.tmp_dirs):
            shutil.rmtree(tmp, ignore_errors=True)
        _restore_signals(old)
    failed_here = any(r["status"] == "failed" for r in records)
    shard.gather(None, rank)  # every rank has written its rows
    code = 1 if failed_here else 0
    if rank.is_main:
        rows = runner.manifest.records()
        series = []
        for p in plan.series:
            row = rows.get(p.key)
            rec = row[1] if row and row[1] else dict(p.public(cfg.in_dir, cfg.anonymize),
                                                     status="pending")
            series.append(rec)
        skipped = [vars(k) for k in plan.skipped]
        summ = summary(series, skipped, time.perf_counter() - start, plan.n_files)
        run_info = {"in_dir": redact(str(cfg.in_dir), plan.identifiers),
                    "out_dir": redact(str(cfg.out_dir), plan.identifiers),
                    "formats": list(cfg.formats), "missing": cfg.missing,
                    "options": runner.options_digest, "ranks": rank.world,
                    "workers": cfg.workers, "anonymize": cfg.anonymize,
                    "send": None if cfg.send is None else str(cfg.send)}
        path = write_report(cfg.out_dir, run_info, series, skipped, summ)
        if not cfg.quiet:
            print("\n".join(summary_lines(summ) + [f"report: {path}"]))
        code = 1 if summ["failed"] else code
    runner.manifest.close()
    shard.shutdown(rank)
    return code
