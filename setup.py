"""Map the top-level folders into the ``mcrepl`` namespace (see ARCHITECTURE §2).

Sub-packages are discovered, so a new module folder never needs listing by hand.
``testing`` is the adapter contract suite other packages run (``mcrepl.testing``).
"""

from setuptools import find_packages, setup

ROOTS = ("orchestrator", "adapters", "policies", "client", "failover", "testing")

packages, package_dir = [], {}
for root in ROOTS:
    package_dir[f"mcrepl.{root}"] = root
    packages.append(f"mcrepl.{root}")
    packages += [f"mcrepl.{root}.{sub}" for sub in find_packages(root)]

setup(packages=packages, package_dir=package_dir,
      package_data={"mcrepl.policies": ["data/*.yaml", "data/*.json"],
                    "mcrepl.failover": ["templates/*"]})
