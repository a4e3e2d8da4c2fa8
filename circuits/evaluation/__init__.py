"""Task loading, option log-likelihood scoring, bootstrap intervals and the ACT evaluation."""

from circuits.evaluation.tasks import Item as Item
from circuits.evaluation.tasks import Task as Task
from circuits.evaluation.tasks import TaskError as TaskError
from circuits.evaluation.tasks import load_task as load_task
