"""Run ITK FastGrowCut (pip package ``itk-growcut``, the filter behind Slicer's Grow from
seeds) on one image and seed file; run with the peer venv's python, never the project's.

    .venv-peers/growcut/bin/python classical_peer_growcut.py IMAGE SEEDS OUTPUT

Prints one JSON line: seconds (the filter's Update only), peak_rss_mb (whole process).
Seeds: 0 unseeded, labels as painted; the output holds the grown labels.
"""

import json
import resource
import sys
import time

import itk


def main(image_path, seeds_path, out_path):
    image = itk.imread(image_path, itk.F)
    seeds = itk.imread(seeds_path, itk.UC)
    f = itk.FastGrowCut[itk.Image[itk.F, 3], itk.Image[itk.UC, 3]].New()
    f.SetInput(image)
    f.SetSeedImage(seeds)
    t0 = time.perf_counter()
    f.Update()
    seconds = time.perf_counter() - t0
    itk.imwrite(f.GetOutput(), out_path, compression=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"seconds": round(seconds, 3), "peak_rss_mb": round(rss, 1)}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
