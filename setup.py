from setuptools import find_packages, setup

setup(
    name="kd-ref",
    version="0.1.0",
    description="Pure-PyTorch reference implementation of BERT knowledge distillation "
                "with actor-critic knowledge selection (Wang et al., EMNLP 2022 Findings)",
    packages=find_packages(include=["kd_ref", "kd_ref.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy", "tokenizers>=0.15", "safetensors>=0.4"],
    extras_require={
        # reference implementations the tests check ours against, never imported by kd_ref
        "test": ["pytest", "hypothesis", "transformers>=4.40", "scipy", "scikit-learn"],
    },
)
