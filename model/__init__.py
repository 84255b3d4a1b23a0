"""The decoupling model: agents, mechanisms, parameters and scenarios (see ``model.model``)."""
