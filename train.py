"""Train LeNet-5 with goal-oriented PHS, PHS or SGD (the paper's experiment).

    python train.py --dataset=fashion_mnist --optimizer=goal_phs \
        --learning_rate=0.1 --mass=10 --friction=0.1 --goal=0.85 --brake_factor=50
    python train.py --preset=table2-lr0.1-goal-f0.1-m10 --goal_reading=remaining
    python train.py --demo   # the main job: one Table 2 pair at batch 10 and 64

With no flags: Table 2's first goal-oriented row on Fashion-MNIST, 2 epochs.
Rerunning with the same --workdir resumes from its latest checkpoint.
"""

from phs_optax_training.cli import main

if __name__ == "__main__":
    main()
