from setuptools import find_packages, setup

setup(
    name="tfcompress",
    version="0.1.0",
    description="Compress tf-keras models inside fit, export integer TFLite, benchmark on Android and edge boards",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tfcompress", "tfcompress.*", "android_bench", "android_bench.*"]),
    install_requires=[
        "tensorflow==2.21.*",
        "tf-keras==2.21.*",
        "tensorflow-model-optimization==0.8.*",
        "ai-edge-litert>=2.0",
        "ai-edge-quantizer==0.10.0",   # int4 weights (it pins ai-edge-litert 2.3.0)
        "tensorboard",
        "absl-py",
        "numpy",
        "scikit-learn",
        "matplotlib",
        "pyyaml",
        "pillow",
    ],
    extras_require={"test": ["pytest>=7", "pytest-timeout"]},
    entry_points={"console_scripts": ["tfcompress=tfcompress.cli:main"]},
)
