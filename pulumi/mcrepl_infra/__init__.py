"""mcrepl's Pulumi program: component resources per concern, built from one mcrepl.yaml.

A uniquely named package (not ``pulumi``/``infra``) so it can never shadow an SDK module.
"""
