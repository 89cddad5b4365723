"""tx2_infer: neural-network inference for robots (ROS 2 package tx2_infer_ros)."""
from glob import glob

from setuptools import find_packages, setup

package_name = 'tx2_infer_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(include=['tx2_infer_core', 'tx2_infer_core.*',
                                    'tx2_infer_ros', 'tx2_infer_ros.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.py')),
        ('share/' + package_name + '/config', glob('config/*')),
        # The CUDA sources stay at the top level; cuda/compile.py's kernel_dir() finds them in
        # the checkout or here, under the prefix the package is installed in.
        ('share/' + package_name + '/kernels', glob('kernels/*.cu') + glob('kernels/*.cuh')),
    ],
    install_requires=['setuptools', 'numpy', 'onnx', 'opencv-python-headless', 'tqdm',
                      'threadpoolctl'],
    zip_safe=False,  # compile.py reads the kernels from files beside the install
    maintainer='tx2_infer developers',
    maintainer_email='dev@tx2-infer.invalid',
    description='Fast neural-network inference (CUDA and CPU) for ROS 2 robots.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'tx2-infer = tx2_infer_core.cli:main',
            'detector_node = tx2_infer_ros.detector_node:main',
            'image_publisher = tx2_infer_ros.image_publisher:main',
            'detection_printer = tx2_infer_ros.detection_printer:main',
        ],
    },
)
