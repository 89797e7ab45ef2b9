#!/bin/sh
# gpu_bundle.sh DIR: completes `make gpu-bundle`. DIR holds descent and
# tests/test_cuda built with the CPU libraries static (STATIC_CPU=1); this
# copies beside them what a GPU machine lacks: the shared libraries Debian
# ships no .a of (cJSON, cmocka, libudev), into DIR/lib (the binaries' rpath
# is $ORIGIN/../lib and $ORIGIN/lib), and the Fashion-MNIST IDX files into
# DIR/data (gpu_check.sh points DESCENT_DATA there), and packs all that as
# DIR-bundle/bundle.tar.xz, the one thing to carry (64 MiB at most travel).
# CUDA's own libraries are the GPU machine's (cudart is static; cuBLAS is
# found there).
set -eu
DIR=${1:?usage: gpu_bundle.sh BUILD_DIR}
DATA=${DESCENT_DATA:-/usr/share/datasets/fashion-mnist}
mkdir -p "$DIR/lib" "$DIR/data"
for bin in "$DIR/descent" "$DIR/tests/test_cuda"; do
    [ -x "$bin" ] || { echo "gpu_bundle.sh: $bin was not built" >&2; exit 2; }
    # every shared library it needs that is not glibc's, the loader's or CUDA's
    ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
        case $(basename "$lib") in
        libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;;
        libcublas*|libcudart*|libcuda.so*|libnccl*) ;;
        *) [ -e "$DIR/lib/$(basename "$lib")" ] || cp -L "$lib" "$DIR/lib/" ;;
        esac
    done
done
# without symbols: the folder must travel (64 MiB at most with the data)
strip "$DIR/descent" "$DIR/tests/test_cuda"
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
    [ -f "$DATA/$f" ] || { echo "gpu_bundle.sh: $DATA/$f not found (apt-get install dataset-fashion-mnist, or set DESCENT_DATA)" >&2; exit 2; }
    cp "$DATA/$f" "$DIR/data/"
done
# one file to carry: the binaries compress 13x (static OpenBLAS), the data is gzip already
mkdir -p "$DIR-bundle"
tar -cJf "$DIR-bundle/bundle.tar.xz" "$DIR/descent" "$DIR/tests/test_cuda" "$DIR/lib" "$DIR/data"
echo "gpu-bundle: $DIR-bundle/bundle.tar.xz ($(du -h "$DIR-bundle/bundle.tar.xz" | cut -f1)): carry $DIR-bundle to the GPU machine, then run sh harness/gpu_check.sh there (it unpacks it)"
echo "gpu-bundle: $DIR ($(du -sh "$DIR/descent" "$DIR/tests/test_cuda" "$DIR/lib" "$DIR/data" | awk '{printf "%s %s  ", $2, $1}'))"
