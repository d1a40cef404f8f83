"""DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile, with consistent UID remapping.

Actions follow Table E.1-1 for the attributes listed here (D: replace with a dummy value, Z: empty,
X: remove, U: replace UIDs consistently, K: keep); private tags are removed, as are curves, overlays'
comments and any attribute not kept that is in the table. Every UI element that identifies an
instance (not a SOP class, transfer syntax or coding scheme) is mapped to ``2.25.<hash(salt, uid)>``:
the same UID maps to the same new UID in every file and every run that shares the salt (kept in the
run's manifest), so series, references and frames of reference stay linked. PatientID / PatientName
become ``ANON-<hash>``, consistent per patient.

Not covered (documented limits): burned-in annotation in pixels (no object is checked for it:
``BurnedInAnnotation`` is kept as the source says), free text inside structured reports.
"""
from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from ldm_med.batch.naming import derive_uid, digest

# Table E.1-1 (the attributes that occur in image objects), action per keyword.
_ACTIONS = {
    "D": ("PatientName", "PatientID", "ContentCreatorName", "StudyDate", "StudyTime",
          "ContentDate", "ContentTime"),
    "Z": ("PatientBirthDate", "PatientSex", "ReferringPhysicianName", "StudyID",
          "AccessionNumber", "PatientAge"),
    "X": ("AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime", "SeriesDate", "SeriesTime",
          "InstanceCreationDate", "InstanceCreationTime", "InstitutionName", "InstitutionAddress",
          "InstitutionalDepartmentName", "StationName", "OperatorsName", "PerformingPhysicianName",
          "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord", "RequestingPhysician",
          "OtherPatientIDs", "OtherPatientNames", "OtherPatientIDsSequence", "PatientBirthName",
          "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers",
          "PatientBirthTime", "PatientSize", "PatientWeight", "MilitaryRank", "BranchOfService",
          "MedicalRecordLocator", "EthnicGroup", "Occupation", "AdditionalPatientHistory",
          "PatientComments", "PatientReligiousPreference", "MedicalAlerts", "Allergies",
          "CountryOfResidence", "RegionOfResidence", "PregnancyStatus", "SmokingStatus",
          "LastMenstrualDate", "PatientState", "ImageComments", "StudyComments",
          "InterpretationAuthor", "RequestAttributesSequence", "DeviceSerialNumber",
          "ProtocolName", "SeriesDescription", "StudyDescription",
          "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
          "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime",
          "PerformedProcedureStepDescription", "PerformedProcedureStepID",
          "RequestedProcedureDescription", "ScheduledProcedureStepDescription",
          "ReferencedPatientSequence", "ReferencedStudySequence",
          "ReferencedPerformedProcedureStepSequence", "AdmittingDiagnosesDescription",
          "IssuerOfPatientID", "PatientInsurancePlanCodeSequence",
          "PersonName", "ReasonForStudy", "ResponsiblePerson", "ResponsibleOrganization",
          "CurrentPatientLocation", "AdmissionID", "IssuerOfAdmissionID", "ServiceEpisodeID",
          "VisitComments", "Arbitrary", "TextComments", "TextString", "FrameComments",
          "AcquisitionComments", "InstitutionCodeSequence", "PatientBirthDateInAlternativeCalendar",
          "OperatorIdentificationSequence",
          "PerformingPhysicianIdentificationSequence", "ReferringPhysicianIdentificationSequence",
          "PhysiciansOfRecordIdentificationSequence", "ConsultingPhysicianName",
          "PhysiciansReadingStudyIdentificationSequence", "RequestingService",
          "OriginalAttributesSequence", "ModifiedAttributesSequence", "DigitalSignaturesSequence",
          "ContributingEquipmentSequence", "DataSetTrailingPadding"),
}
_DUMMY_DATE, _DUMMY_TIME = "19000101", "000000"
# UI attributes that name classes or schemes, not instances: kept.
_KEEP_UIDS = {"SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID",
              "TransferSyntaxUID", "ImplementationClassUID", "CodingSchemeUID", "ContextUID",
              "MappingResource", "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID",
              "ReferencedTransferSyntaxUIDInFile", "ReferencedRelatedGeneralSOPClassUIDInFile",
              "ReferencedSOPClassUIDInFile", "PrivateInformationCreatorUID", "CodingSchemeUIDs",
              "SOPClassesInStudy", "ContextGroupExtensionCreatorUID"}


class Anonymizer:
    """Callable that de-identifies a dataset in place. ``salt``: the run's secret."""

    def __init__(self, salt: str) -> None:
        self.salt = salt

    def uid(self, uid: str) -> str:
        return derive_uid("ldm-med anonymize", self.salt, str(uid))

    def pseudonym(self, value: object) -> str:
        return "ANON-" + digest("ldm-med patient", self.salt, str(value or ""))[:12].upper()

    def __call__(self, ds: Dataset) -> None:
        patient = self.pseudonym(ds.get("PatientID", "") or ds.get("PatientName", ""))
        self._walk(ds, patient)
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "ldm-med: DICOM PS3.15 Basic Application Confidentiality Profile"
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = [code]

    def _walk(self, ds: Dataset, patient: str) -> None:
        ds.remove_private_tags()
        for key in _ACTIONS["X"]:
            if key in ds:
                del ds[key]
        for key in _ACTIONS["Z"]:
            if key in ds:
                ds[key].value = ""
        for key in _ACTIONS["D"]:
            if key not in ds:
                continue
            vr = ds[key].VR
            ds[key].value = (patient if key in ("PatientName", "PatientID") else
                             _DUMMY_DATE if vr == "DA" else _DUMMY_TIME if vr == "TM" else "ANON")
        for elem in list(ds):
            if elem.tag.group in (0x5000, 0x6000) and elem.tag.element == 0x4000:
                del ds[elem.tag]  # curve / overlay comments
            elif elem.VR == "SQ":
                for item in elem.value:
                    self._walk(item, patient)
            elif elem.VR == "UI" and elem.keyword not in _KEEP_UIDS and elem.value:
                vals = elem.value if isinstance(elem.value, (list, Sequence)) or \
                    hasattr(elem.value, "__iter__") and not isinstance(elem.value, str) \
                    else [elem.value]
                new = [self.uid(v) for v in vals]
                elem.value = new if len(new) > 1 else new[0]
