"""``nlkd import``: annotation tools' formats -> an nlkd folder data set (one module per format).

Each ``plan_*`` reads a format's class table and file lists and returns an :class:`ImportPlan`;
:func:`write_import` decodes every mask and writes the data set, all or nothing.
"""

from nlkd.data.importers.coco import plan_coco
from nlkd.data.importers.common import IGNORE_INDEX, ImportItem, ImportPlan
from nlkd.data.importers.cvat import cvat_export_folder, plan_cvat
from nlkd.data.importers.palette import plan_palette, read_class_table
from nlkd.data.importers.voc import VOC_CLASSES, plan_voc, plan_voc_root
from nlkd.data.importers.writer import write_import

__all__ = [
    "IGNORE_INDEX",
    "IMPORT_FORMATS",
    "VOC_CLASSES",
    "ImportItem",
    "ImportPlan",
    "cvat_export_folder",
    "plan_coco",
    "plan_cvat",
    "plan_palette",
    "plan_voc",
    "plan_voc_root",
    "read_class_table",
    "write_import",
]

IMPORT_FORMATS = ("coco", "voc", "palette", "cvat")  # `nlkd import FORMAT`
