# Sourced by the one-call device scripts: the setup from a carried data folder $D (default
# .devslim; device_verify.sh says what it holds): pycuda and the other wheels of $D/whl into
# /tmp/site, the environment (cache, zoo pack), the GPU's name in $OUT/device.txt, the packed
# assets into the cache; ``since MSG`` prints the seconds from here.
T0=$(date +%s)
since() { echo "[$(( $(date +%s) - T0 )) s] $1"; }
D=${D:-.devslim}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  $D/whl/*.whl 2> /dev/null || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TX2_INFER_CACHE=/tmp/tx2cache
export TX2_INFER_ZOO_PACKED=$PWD/$D/zoo PIP_RETRIES=0 PIP_TIMEOUT=2
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/device.txt
python3 bench/devdata.py unpack $D /tmp/tx2cache/assets > /dev/null || exit 1
