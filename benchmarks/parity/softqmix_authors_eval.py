"""The matrix-game report of one trained run of the Soft-QMIX authors' code, as JSON on stdout.

Runs in the venv that setup_softqmix_authors.sh builds, with their src/ on the path (matrix_parity.py calls
it); it imports their agent, mixer, action selector and env and reads the agent.th and mixer.th that their
run saved at its last step:

    python softqmix_authors_eval.py SRC_DIR MODEL_DIR CONFIG_JSON

At the game's only decision state it evaluates what their code acts on and learns: each agent's Q_i (their
greedy test action is argmax_a Q_i), g_i(Q_i) (their `func_g`), Q_tot of every joint action (their mixer's
forward on the g values) and the training policy softmax(f(g(Q)) / alpha) with their selector's alpha.
The same quantities, in the same layout, as softqmix.eval.matrix_report on our side.
"""

from __future__ import annotations

import itertools
import json
import sys
from types import SimpleNamespace


def main() -> None:
    src, model_dir, config_path = sys.argv[1:4]
    sys.path.insert(0, src)
    import numpy as np
    import torch as th
    from components.action_selectors import REGISTRY as selectors
    from envs.one_step_matrix_game import OneStepMatrixGame, payoff_values
    from modules.agents import REGISTRY as agents
    from modules.mixers.nmix import Mixer

    with open(config_path) as handle:
        config = json.load(handle)
    env = OneStepMatrixGame()
    info = env.get_env_info()
    n, n_actions = info["n_agents"], info["n_actions"]
    args = SimpleNamespace(**config, n_agents=n, n_actions=n_actions, state_shape=info["state_shape"])
    if args.obs_last_action:
        raise SystemExit("expected obs_last_action False (their one_step_matrix_game.yaml)")

    agent = agents[args.agent](info["obs_shape"] + (n if args.obs_agent_id else 0), args)
    agent.load_state_dict(th.load(f"{model_dir}/agent.th", map_location="cpu"))
    mixer = Mixer(args)
    mixer.load_state_dict(th.load(f"{model_dir}/mixer.th", map_location="cpu"))
    alpha = selectors[args.action_selector](args).entropy_coef

    obs, state = env.reset()
    parts = [th.tensor(np.array(obs), dtype=th.float32)]
    if args.obs_agent_id:
        parts.append(th.eye(n))
    inputs = th.cat(parts, dim=-1).unsqueeze(0)  # [1, n, input]
    state_t = th.tensor(np.array(state), dtype=th.float32).view(1, 1, -1)
    with th.no_grad():
        q, _ = agent(inputs, agent.init_hidden().expand(1, n, -1))  # [1, n, A]
        g = mixer.func_g(q.view(1, 1, n, n_actions), state_t, 0).view(n, n_actions)
        f = mixer.func_f(g.view(1, 1, n, n_actions), state_t, 0).view(n, n_actions)
        probs = th.softmax(f / alpha, dim=-1)
        joint = list(itertools.product(range(n_actions), repeat=n))
        q_tot = [
            float(mixer(th.stack([g[i, a] for i, a in enumerate(actions)]).view(1, 1, n), state_t, None))
            for actions in joint
        ]
    table = [q_tot[row * n_actions : (row + 1) * n_actions] for row in range(n_actions)]
    best = max(range(len(q_tot)), key=q_tot.__getitem__)
    print(
        json.dumps(
            {
                "q_tot": table,
                "q_agents": q[0].tolist(),
                "greedy_actions": q[0].argmax(-1).tolist(),
                "policy_probs": probs.tolist(),
                "q_tot_argmax": list(joint[best]),
                "alpha": alpha,
                "payoff": [list(map(float, row)) for row in payoff_values],
            }
        )
    )


if __name__ == "__main__":
    main()
