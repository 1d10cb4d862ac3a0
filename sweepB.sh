for lr in 5e-4; do
  /usr/bin/time -o irnn_lr$lr.time nice -n 5 ./recur-base experiment adding --cells irnn --lengths 200 --seeds 1 --lr $lr --jobs 1 --verbose --out /tmp/lab/irnn_lr$lr > irnn_lr$lr.log 2>&1
done
/usr/bin/time -o irnn_lr1e-3_c01.time nice -n 5 ./recur-base experiment adding --cells irnn --lengths 200 --seeds 1 --lr 1e-3 --clip 0.1 --jobs 1 --verbose --out /tmp/lab/irnn_lr1e-3_c01 > irnn_lr1e-3_c01.log 2>&1
