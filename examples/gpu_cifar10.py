"""The GPU example through the Python API: ``python examples/gpu_cifar10.py [--address auto]``.

Same study as ``gpu_cifar10.yaml``; see the README's "A real GPU study" section.
"""

import argparse
from pathlib import Path

import tuner

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")
    parser.add_argument("--budget-kwh", type=float, help="energy budget (default: the YAML's)")
    args = parser.parse_args()
    result = tuner.tune(Path(__file__).with_name("gpu_cifar10.yaml"), budget_kwh=args.budget_kwh,
                        address=args.address)
    print(result.front_table())
    knee = result.knee()
    if knee is not None:
        print(f"\nknee: accuracy {knee['accuracy']:.3f} at {knee['gpu_power_limit_w']} W "
              f"for {knee['energy_kwh']:.3f} kWh")
    print(result.summary())
