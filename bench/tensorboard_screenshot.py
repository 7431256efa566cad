"""A screenshot of TensorBoard's HParams table over a real 3-λ sweep, from a headless browser.

Runs `regrun -m logger=tensorboard reg=l1_activations reg.targets.l1_activations.lambda=
1e-4,1e-3,1e-2` on MNIST (cut to --train-limit/--test-limit samples, one epoch), serves the
sweep's `tb/` folder with TensorBoard's own server, and has Chromium (`--headless
--screenshot`) open its `#hparams` tab. The PNG goes to docs/assets/tensorboard_hparams.png,
which the trackers how-to shows.

    python bench/tensorboard_screenshot.py --data-root ../shared/data

Needs the `tensorboard` extra and a Chromium (Debian: apt-get install chromium).
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from regrun.layout import TENSORBOARD

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAMBDAS = "1e-4,1e-3,1e-2"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="../shared/data", help="the folder holding MNIST/raw")
    parser.add_argument("--train-limit", type=int, default=2000, help="training samples per job")
    parser.add_argument("--test-limit", type=int, default=1000, help="test samples per job")
    parser.add_argument("--port", type=int, default=6123, help="TensorBoard's port on 127.0.0.1")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "assets" / "tensorboard_hparams.png")
    parser.add_argument("--browser", default=shutil.which("chromium") or "chromium", help="a Chromium executable")
    return parser.parse_args()


def sweep(folder: Path, args: argparse.Namespace) -> Path:
    """The 3-λ sweep with logger=tensorboard; returns its event folder."""
    subprocess.run([str(BIN / "regrun"), "-m", "logger=tensorboard", "reg=l1_activations",
                    f"reg.targets.l1_activations.lambda={LAMBDAS}", "trainer.epochs=1",
                    f"dataset.root={Path(args.data_root).resolve()}", f"dataset.train_limit={args.train_limit}",
                    f"dataset.test_limit={args.test_limit}", f"hydra.sweep.dir={folder / 'sweep'}"],
                   cwd=folder, check=True, capture_output=True)
    return folder / "sweep" / TENSORBOARD


def wait_for(url: str, seconds: float = 60) -> None:
    """Return once the server answers `url`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logdir = sweep(Path(tmp), args)
        url = f"http://127.0.0.1:{args.port}"
        server = subprocess.Popen([str(BIN / "tensorboard"), "--logdir", str(logdir), "--port", str(args.port),
                                   "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(f"{url}/data/plugins_listing")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            # virtual time: the page's scripts run until the table has loaded, then it is drawn
            subprocess.run([args.browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1600,900",
                            "--virtual-time-budget=15000", f"--screenshot={args.out}", f"{url}/#hparams"],
                           check=True, capture_output=True, timeout=120)
        finally:
            server.terminate()
            server.wait()
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
