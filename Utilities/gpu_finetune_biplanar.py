"""Fine-tune the BiplanarRecon network on a lent GPU machine in one call: draw the dataset there, train.

Why: drawing lumbar1600 takes this 2-core CPU about 15 minutes alone and a fine-tune an hour; a
GPU machine with 16 cores does both in minutes, but it starts bare (torch and Pillow, no
SimpleITK, vtk or Slicer), takes at most 64 MiB of working tree, and gives back at most 8 files.

Here (needs the repository's own environment and ../shared/data):

    python Utilities/gpu_finetune_biplanar.py prepare --real-ap ../shared/data/xray/aasce_train --out .devjob

writes CARRY (keep it out of git, e.g. in .git/info/exclude): the sample CT as the dataset's
background (spine_ct.npz: HU as int16, exact for it), the real AP radiographs of the train and
validation rows only (the report rows stay here), and ``shim/SimpleITK.py``, the few SimpleITK
calls that reading those JPEGs makes, through Pillow. There (the device tool's command, CARRY
carried):

    PYTHONPATH=$PWD/.devjob/shim python3 Utilities/gpu_finetune_biplanar.py run --carry .devjob --out $OUT

draws lumbar1600 (``--cases``, seed 11, as the bundled network's) with a worker per core, then
fine-tunes the main network from the bundled one (batch 32 with 8 real AP radiographs, rate
5e-4) and the bundled refiner on top of the result (rate 3e-4), each sized by a short probe run
to its share of ``--budget-s``, and ends with ``benchmarks/biplanar_network.py --device cuda``.
OUT receives main_best.pt, main_history.json, refiner_best.pt, refiner_history.json, bench.json
(and the log, if the command tees it there). Back here, the two folders' files are a training
folder each for ``Utilities/package_biplanar_network.py`` once the held-out benchmarks have run
here. Everything runs on the CPU too (slowly), which is how this script is checked.
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from package_biplanar_network import with_refiner  # noqa: E402  (beside this script)

SHIM = '''"""The SimpleITK calls that reading AASCE JPEGs makes, through Pillow (Utilities/gpu_finetune_biplanar.py)."""
import numpy as np
from PIL import Image as _PIL


class _Image:
    def __init__(self, array):
        self.array = array

    def GetNumberOfComponentsPerPixel(self):
        return 1 if self.array.ndim == 2 else self.array.shape[-1]

    def GetSpacing(self):
        return (1.0, 1.0)


class ImageFileReader:
    def SetFileName(self, name):
        self.name = name

    def ReadImageInformation(self):
        with _PIL.open(self.name) as image:
            self.size = image.size

    def GetSize(self):
        return self.size

    def Execute(self):
        with _PIL.open(self.name) as image:
            return _Image(np.asarray(image if image.mode in ("L", "I;16", "I") else image.convert("L")))

    def HasMetaDataKey(self, key):
        return False

    def GetMetaData(self, key):
        raise KeyError(key)


def GetArrayFromImage(image):
    return image.array
'''


def prepare(real_ap: Path, out: Path) -> None:
    from BoneReconLib.lumbar_radiograph import SpineCT
    from BoneReconLib.real_ap_corners import split_of
    from BoneReconLib.sample_data import SAMPLE_CT, SAMPLE_VERTEBRA_LABELS

    background = SpineCT.from_files(SAMPLE_CT, SAMPLE_VERTEBRA_LABELS)
    if not np.array_equal(background.hu, background.hu.astype(np.int16)):
        raise SystemExit("The sample CT's HU are not whole numbers: store them otherwise.")
    (out / "shim").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "spine_ct.npz", name=np.array(background.name), hu=background.hu.astype(np.int16),
                        ijk_to_ras=background.ijk_to_ras, lumbar=background.lumbar,
                        levels=np.array(list(background.centroids)),
                        centroids=np.stack(list(background.centroids.values())))
    (out / "shim" / "SimpleITK.py").write_text(SHIM)
    (out / "aasce" / "images").mkdir(parents=True, exist_ok=True)
    for name in ("filenames.csv", "landmarks.csv"):
        shutil.copy(real_ap / name, out / "aasce" / name)
    names = [row[0] for row in csv.reader(open(real_ap / "filenames.csv", newline="")) if row]
    kept = [name for row, name in enumerate(names) if split_of(row) != "report"]
    for name in kept:
        shutil.copy(real_ap / "images" / name, out / "aasce" / "images" / name)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"Wrote {out}: the background CT, {len(kept)} real AP radiographs (train and validation rows), the "
          f"SimpleITK shim; {size / 2 ** 20:.1f} MiB")


class Job:
    """The run on the GPU machine: phases sized to the time left, each failure logged, not fatal."""

    def __init__(self, args):
        self.args, self.start = args, time.monotonic()
        self.out, self.runs, self.data = Path(args.out), Path(args.runs), Path(args.data)
        self.out.mkdir(parents=True, exist_ok=True)
        self.runs.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.start)

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f} s] {message}", flush=True)

    def draw_dataset(self) -> None:
        from BoneReconLib.lumbar_dataset import generate_lumbar_dataset
        from BoneReconLib.lumbar_radiograph import SpineCT
        from BoneReconLib.shape_model_library import load_models, read_manifest

        if (self.data / "manifest.json").exists():
            return
        z = np.load(Path(self.args.carry) / "spine_ct.npz")
        background = SpineCT(str(z["name"]), z["hu"].astype(np.float32), z["ijk_to_ras"], z["lumbar"],
                             {str(level): c for level, c in zip(z["levels"], z["centroids"])})
        models = load_models(None, levels=["L1", "L2", "L3", "L4", "L5"])
        hashes = {level: entry["sha256"] for level, entry in read_manifest(None)["models"].items() if level in models}
        manifest = generate_lumbar_dataset(self.data, [background], models, self.args.cases, seed=11,
                                           size=(self.args.size, self.args.size), model_hashes=hashes,
                                           workers=self.args.workers, progress=self.every_tenth("dataset"))
        self.log(f"dataset: {len(manifest['cases'])} cases, {manifest['cases_per_minute']:.0f} per minute")

    def every_tenth(self, name):
        marks = set()

        def progress(fraction, message):
            if int(fraction * 10) not in marks:
                marks.add(int(fraction * 10))
                self.log(f"{name} {message}")
        return progress

    def train(self, name: str, seconds: float, **settings) -> None:
        """A probe run, then the run sized to ``seconds``; its best.pt and history go to OUT."""
        from BoneReconLib.biplanar_training import train_biplanar

        stamps, probe = {}, self.args.probe_steps

        def stamp(fraction, message):
            stamps[int(message.split()[1].split("/")[0])] = time.monotonic()

        train_biplanar(self.data, self.runs / f"probe-{name}", steps=probe, progress=stamp, **settings)
        per_step = 1.1 * (stamps[probe - 1] - stamps[10]) / (probe - 11)  # past the loader's start
        validation = max(stamps[probe] - stamps[probe - 1] - per_step, 0.0)
        steps = max(int((seconds - 3 * validation - 10) / per_step), 20)
        self.log(f"{name}: {per_step:.3f} s per step, validation {validation:.1f} s: {steps} steps")
        history = train_biplanar(self.data, self.runs / name, steps=steps, validate_every=-(-steps // 3),
                                 progress=self.every_tenth(name), **settings)
        for entry in history["validation"]:
            self.log(f"{name} validation {json.dumps(entry)}")
        shutil.copy(self.runs / name / "best.pt", self.out / f"{name}_best.pt")
        shutil.copy(self.runs / name / "history.json", self.out / f"{name}_history.json")

    def run(self) -> int:
        import torch

        from BoneReconLib.network_library import bundled_weights

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.log(f"torch {torch.__version__} on {device}, {os.cpu_count()} cores")
        common = dict(batch_size=self.args.batch, seed=0, device=device, real_ap=Path(self.args.carry) / "aasce",
                      real_per_batch=self.args.real_per_batch, workers=self.args.workers, size=self.args.size)
        bundled = torch.load(bundled_weights("biplanar"), map_location="cpu", weights_only=False)
        refiner_init = bundled_weights("biplanar")
        try:
            self.draw_dataset()
            main_init = self.runs / "bundled-main.pt"
            torch.save(dict(model={k: v for k, v in bundled["model"].items() if not k.startswith("refiner.")},
                            config={k: v for k, v in bundled["config"].items() if k != "refiner"}), main_init)
            self.train("main", (self.left() - self.args.bench_s) / 2, init=main_init, learning_rate=5e-4, **common)
            best = torch.load(self.runs / "main" / "best.pt", map_location="cpu", weights_only=False)
            model, config = with_refiner(best, bundled, "the bundled network")
            refiner_init = self.runs / "main-with-bundled-refiner.pt"
            torch.save(dict(model=model, config=config), refiner_init)
        except Exception:
            traceback.print_exc()
            self.log("the dataset or the main network FAILED")
        try:
            if (self.data / "manifest.json").exists() and self.left() > self.args.bench_s + 60:
                self.train("refiner", self.left() - self.args.bench_s, init=refiner_init, learning_rate=3e-4,
                           refiner=True, **common)
        except Exception:
            traceback.print_exc()
            self.log("the refiner FAILED")
        if not (self.data / "manifest.json").exists():
            return 1
        weights = self.runs / "refiner" / "best.pt"
        command = [sys.executable, str(REPO / "benchmarks" / "biplanar_network.py"), "--data", str(self.data),
                   "--device", device, "--max-cases", "160" if self.left() > 50 else "40",
                   "--json", str(self.out / "bench.json")] + (["--weights", str(weights)] if weights.exists() else [])
        self.log("benchmark: " + " ".join(command[1:]))
        return subprocess.run(command, timeout=max(self.left() + 30, 30)).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    here = commands.add_parser("prepare", help="write the folder to carry to the GPU machine")
    here.add_argument("--real-ap", required=True, type=Path, help="the AASCE-format folder of real AP radiographs")
    here.add_argument("--out", required=True, type=Path)
    there = commands.add_parser("run", help="on the GPU machine: dataset, fine-tunes, benchmark")
    there.add_argument("--carry", required=True, help="the folder 'prepare' wrote")
    there.add_argument("--out", required=True, help="where the weights, histories and figures go")
    there.add_argument("--data", default="/tmp/lumbar1600")
    there.add_argument("--runs", default="/tmp/runs")
    there.add_argument("--cases", type=int, default=1600)
    there.add_argument("--size", type=int, default=256)
    there.add_argument("--batch", type=int, default=32)
    there.add_argument("--real-per-batch", type=int, default=8)
    there.add_argument("--workers", type=int, default=max((os.cpu_count() or 2) - 1, 1))
    there.add_argument("--budget-s", type=float, default=500.0, help="seconds for all of it (default 500)")
    there.add_argument("--bench-s", type=float, default=60.0, help="seconds kept for the benchmark (default 60)")
    there.add_argument("--probe-steps", type=int, default=30)
    args = parser.parse_args()
    if args.command == "run" and args.probe_steps < 12:
        parser.error("--probe-steps must be at least 12 (the step time is read past the loader's start)")
    if args.command == "prepare":
        prepare(args.real_ap, args.out)
        return 0
    return Job(args).run()


if __name__ == "__main__":  # the dataset's spawned workers import this file again: nothing runs then
    sys.exit(main())
