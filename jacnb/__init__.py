"""jacnb: the helper package of the executable reproduction book of

* Sokolic, Giryes, Sapiro, Rodrigues, "Robust Large Margin Deep Neural Networks", IEEE TSP 2017,
* Oymak, Fabian, Li, Soltanolkotabi, "Generalization Guarantees for Neural Networks via
  Harnessing the Low-rank Structure of the Jacobian", 2019.

Modules (each named for the paper's noun it holds): ``models``, ``jacobian``, ``regularizers``,
``bounds``, ``data``, ``train``, ``results``, ``paper``, ``profiles``, ``plots``, ``book``.
"""

__version__ = "0.1.0"
